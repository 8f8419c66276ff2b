"""What this deployment sets for every DAG of the project: owner, retries, where data lives, poll interval.

Deployment settings, not part of the provider: a team deploying the flows changes them here (or through
the environment). Cheap to import (no I/O, no heavy library): DAG files import it at parse time. The DAG
processor, the task runner and ``airflow dags test`` put the DAGs folder on ``sys.path``; ``make`` and the
image add it to ``PYTHONPATH`` for the CLI commands that do not. ``.airflowignore`` keeps the DAG processor
from parsing this file as a DAG file.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from airflow.sdk import Param

OWNER = "annotation-governance"

DEFAULT_ARGS = {
    "owner": OWNER,
    "retries": 2,
    "retry_delay": timedelta(seconds=20),
    "retry_exponential_backoff": True,
}

BATCH_PARAMS = {
    "dataset": Param("demo_batch", type="string", pattern=r"^[^,\s]+$", title="Dataset"),
    "version": Param(
        None,
        type=["null", "string"],
        title="Version",
        description="b<last example id>; empty: the dataset as it is now.",
    ),
}
"""The trigger form's fields naming the batch a flow works on (label escalation, QA)."""

OPENTEXT_POLL_SECONDS = float(os.environ.get("OPENTEXT_POLL_SECONDS", "30"))
"""How often waits read OpenText; a decision resumes its task within this interval (plus a little)."""


def data_dir() -> Path:
    """Root of the project's files: ``PROJECT_DATA_DIR``, else ``data/`` beside the DAGs folder.

    Read when a task runs, so a worker's environment decides, not the DAG processor's.
    """
    configured = os.environ.get("PROJECT_DATA_DIR")
    return Path(configured) if configured else Path(__file__).resolve().parent.parent / "data"


REGULATED_REDACTION = os.environ.get(
    "REGULATED_REDACTION", "prodigy_opentext.core.regulated.mask_contact_details"
)
"""The callable (dotted path) that masks regulated content before it is loaded; ``none``: no redaction."""


def holding_dir() -> Path:
    """Where regulated content waits for its access approval: ``REGULATED_HOLDING_DIR``, else
    ``<data>/regulated/holding``. Only Airflow reads it: never give the Prodigy server this folder."""
    configured = os.environ.get("REGULATED_HOLDING_DIR")
    return Path(configured) if configured else data_dir() / "regulated" / "holding"


def audit_log() -> Path:
    """The hash-chained audit log every flow appends to."""
    return data_dir() / "audit" / "governance.jsonl"
