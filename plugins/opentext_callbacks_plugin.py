"""Decision callbacks from OpenText in this deployment's Airflow: wiring only, as a DAG file is.

The app is the provider's (:mod:`prodigy_opentext.decision_callbacks`): OpenText's models post to
``<airflow>/opentext-callbacks/decisions`` when a decision is in, and the waiting task reads it at once.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from prodigy_opentext.decision_callbacks import fastapi_app


class OpenTextCallbacksPlugin(AirflowPlugin):
    name = "opentext_callbacks"
    fastapi_apps = [fastapi_app()]
