"""The Governance view in this deployment's Airflow UI: wiring only, as a DAG file is.

Airflow loads this file from the plugins folder; the view is the provider's
(:mod:`prodigy_opentext.governance_view`), reading the data folder and audit log the DAGs write
(``dags/_governance_deployment.py``, on ``PYTHONPATH`` as for the CLI), and open to whoever may read the
runs of ``governance_report``, the DAG that writes the same report daily and on every release.
"""

from __future__ import annotations

from _governance_deployment import audit_log, data_dir
from airflow.plugins_manager import AirflowPlugin

from prodigy_opentext.governance_view import NAV_ENTRY, fastapi_app

REPORT_DAG = "governance_report"


class GovernanceViewPlugin(AirflowPlugin):
    name = "governance_view"
    fastapi_apps = [fastapi_app(data_dir, audit_log, readers_of=REPORT_DAG)]
    external_views = [NAV_ENTRY]
