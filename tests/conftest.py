"""Test settings shared by the whole suite.

The suite runs against a project-local Airflow home with its own metadata database
(``.airflow/tests.db``), so tests never touch the database ``make demo`` uses. The environment is
set here, before anything imports Airflow.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
AIRFLOW_HOME = Path(os.environ.setdefault("AIRFLOW_HOME", str(REPO / ".airflow")))
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{AIRFLOW_HOME / 'tests.db'}"
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(REPO / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
os.environ.setdefault("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
os.environ.setdefault("OPENTEXT_POLL_SECONDS", "1")
# No lineage from the suite's runs (the project's airflow.cfg sends it to data/);
# tests/operators/test_lineage.py turns it on for its own runs.
os.environ["AIRFLOW__OPENLINEAGE__DISABLED"] = "True"
# Outside a task the test process reads Variables and Connections from the metadata database, as
# Airflow's CLI and api-server do (the Task SDK's server context); tasks run by dag.test() use their own.
os.environ["_AIRFLOW_PROCESS_CONTEXT"] = "server"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.samples",
    "tests.fixtures.airflow_db",
    "tests.fixtures.prodigy_sandbox",
    "tests.fixtures.opentext_sandbox",
    "tests.fixtures.mlflow_server",
    "tests.fixtures.airflow_cluster",
]
