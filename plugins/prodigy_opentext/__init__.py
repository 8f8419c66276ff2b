"""Airflow provider for annotation governance between Prodigy and OpenText Workflow Service.

Importing this package does no I/O: Airflow's provider manager imports it to read
:func:`get_provider_info`, and the scheduler parses DAGs that import from it.
"""

from __future__ import annotations

__version__ = "0.1.0"


def get_provider_info() -> dict:
    """Describe the provider to Airflow's ProvidersManager (``apache_airflow_provider`` entry point)."""
    return {
        "package-name": "prodigy-opentext-provider",
        "name": "Prodigy and OpenText Workflow Service",
        "description": "Hooks, operators, sensors and triggers that route Prodigy annotation data "
        "through OpenText Workflow Service approvals.",
        "versions": [__version__],
        "connection-types": [
            {
                "connection-type": "prodigy",
                "hook-class-name": "prodigy_opentext.hooks.prodigy.ProdigyHook",
            },
            {
                "connection-type": "opentext_workflow",
                "hook-class-name": "prodigy_opentext.hooks.opentext.OpenTextWorkflowHook",
            },
        ],
        "hooks": [
            {
                "integration-name": "Prodigy",
                "python-modules": ["prodigy_opentext.hooks.prodigy"],
            },
            {
                "integration-name": "OpenText Workflow Service",
                "python-modules": ["prodigy_opentext.hooks.opentext"],
            },
        ],
        "integrations": [
            {"integration-name": "Prodigy", "external-doc-url": "https://prodi.gy/docs", "tags": ["software"]},
            {
                "integration-name": "OpenText Workflow Service",
                "external-doc-url": "https://developer.opentext.com/",
                "tags": ["service"],
            },
        ],
    }
