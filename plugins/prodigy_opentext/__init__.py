"""Airflow provider for annotation governance between Prodigy and OpenText Workflow Service.

Importing this package does no I/O: Airflow's provider manager imports it to read
:func:`get_provider_info`, and the scheduler parses DAGs that import from it.
"""

from __future__ import annotations

__version__ = "0.1.0"

_OPTIONAL_STRING = {"type": ["string", "null"]}


def get_provider_info() -> dict:
    """Describe the provider to Airflow's ProvidersManager (``apache_airflow_provider`` entry point).

    Connection form metadata is declared here rather than by hook methods, as Airflow 3.2+ expects, so the
    UI shows the right fields without importing the hooks.
    """
    return {
        "package-name": "prodigy-opentext-provider",
        "name": "Prodigy and OpenText Workflow Service",
        "description": "Hooks, operators, sensors and triggers that route Prodigy annotation data "
        "through OpenText Workflow Service approvals.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Prodigy",
                "external-doc-url": "https://prodi.gy/docs",
                "tags": ["software"],
            },
            {
                "integration-name": "OpenText Workflow Service",
                "external-doc-url": "https://developer.opentext.com/",
                "tags": ["service"],
            },
            {
                "integration-name": "MLflow",
                "external-doc-url": "https://mlflow.org/docs/latest/ml/tracking/",
                "tags": ["software"],
            },
        ],
        "hooks": [
            {"integration-name": "Prodigy", "python-modules": ["prodigy_opentext.hooks.prodigy"]},
            {
                "integration-name": "OpenText Workflow Service",
                "python-modules": ["prodigy_opentext.hooks.opentext"],
            },
            {"integration-name": "MLflow", "python-modules": ["prodigy_opentext.hooks.mlflow"]},
        ],
        "operators": [
            {
                "integration-name": "Prodigy",
                "python-modules": [
                    "prodigy_opentext.operators.prodigy",
                    "prodigy_opentext.operators.annotation_validation",
                ],
            },
            {
                "integration-name": "OpenText Workflow Service",
                "python-modules": [
                    "prodigy_opentext.operators.opentext",
                    "prodigy_opentext.operators.dag_run",
                ],
            },
        ],
        "sensors": [
            {"integration-name": "Prodigy", "python-modules": ["prodigy_opentext.sensors.prodigy"]},
            {
                "integration-name": "OpenText Workflow Service",
                "python-modules": ["prodigy_opentext.sensors.opentext"],
            },
        ],
        "triggers": [
            {"integration-name": "Prodigy", "python-modules": ["prodigy_opentext.triggers.prodigy"]},
            {
                "integration-name": "OpenText Workflow Service",
                "python-modules": ["prodigy_opentext.triggers.opentext"],
            },
        ],
        "connection-types": [
            {
                "connection-type": "prodigy",
                "hook-class-name": "prodigy_opentext.hooks.prodigy.ProdigyHook",
                "hook-name": "Prodigy",
                "ui-field-behaviour": {
                    "hidden-fields": [],
                    "relabeling": {"schema": "Database", "extra": "prodigy.json settings"},
                    "placeholders": {
                        "host": "PostgreSQL/MySQL host (leave empty for SQLite)",
                        "schema": "prodigy",
                        "extra": '{"db": "sqlite", "db_settings": {"sqlite": {"name": "prodigy.db", '
                        '"path": "/data/prodigy"}}}',
                    },
                },
            },
            {
                "connection-type": "opentext_workflow",
                "hook-class-name": "prodigy_opentext.hooks.opentext.OpenTextWorkflowHook",
                "hook-name": "OpenText Workflow Service",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {"host": "Root URL", "login": "Client ID", "password": "Client secret"},
                    "placeholders": {"host": "https://na-1-dev.api.opentext.com"},
                },
                "conn-fields": {
                    "tenant_id": {"label": "Tenant ID", "schema": _OPTIONAL_STRING},
                    "grant_type": {
                        "label": "Grant type",
                        "description": "client_credentials (default) or password",
                        "schema": {"type": ["string", "null"], "default": "client_credentials"},
                    },
                    "username": {"label": "User (password grant)", "schema": _OPTIONAL_STRING},
                    "password": {
                        "label": "User password (password grant)",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "timeout": {
                        "label": "Request timeout (s)",
                        "schema": {"type": ["number", "null"], "default": 30},
                    },
                    "verify": {
                        "label": "Verify TLS certificates",
                        "schema": {"type": ["boolean", "null"], "default": True},
                    },
                },
            },
            {
                "connection-type": "mlflow",
                "hook-class-name": "prodigy_opentext.hooks.mlflow.MLflowTrackingHook",
                "hook-name": "MLflow tracking server",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {
                        "host": "Tracking server URL",
                        "login": "User (basic auth)",
                        "password": "Password (basic auth)",
                    },
                    "placeholders": {"host": "http://mlflow:5000"},
                },
                "conn-fields": {
                    "experiment_name": {
                        "label": "Experiment",
                        "description": "where training runs are recorded",
                        "schema": {"type": ["string", "null"], "default": "annotation-releases"},
                    },
                    "token": {
                        "label": "Bearer token (instead of basic auth)",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "ui_url": {
                        "label": "UI URL",
                        "description": "where people open MLflow, when not at the tracking server URL",
                        "schema": _OPTIONAL_STRING,
                    },
                    "timeout": {
                        "label": "Request timeout (s)",
                        "schema": {"type": ["integer", "null"], "default": 30},
                    },
                    "max_retries": {
                        "label": "Retries per request",
                        "schema": {"type": ["integer", "null"], "default": 3},
                    },
                    "verify": {
                        "label": "Verify TLS certificates",
                        "schema": {"type": ["boolean", "null"], "default": True},
                    },
                },
            },
        ],
    }
