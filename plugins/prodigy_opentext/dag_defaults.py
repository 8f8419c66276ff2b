"""What every DAG of the project shares: owner, retries, where data lives, the assets flows hand over.

Cheap to import (no I/O, no heavy library): DAG files import it at parse time.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from airflow.sdk import Asset

OWNER = "annotation-governance"

DEFAULT_ARGS = {
    "owner": OWNER,
    "retries": 2,
    "retry_delay": timedelta(seconds=20),
    "retry_exponential_backoff": True,
}

OPENTEXT_POLL_SECONDS = float(os.environ.get("OPENTEXT_POLL_SECONDS", "30"))
"""How often waits read OpenText; a decision resumes its task within this interval (plus a little)."""

ANNOTATION_RELEASES = Asset(name="annotation_releases", uri="file:///annotation-releases")
"""Updated by every release written; its event's ``extra`` names the dataset, version and manifest."""


def data_dir(dags_folder: str | os.PathLike) -> Path:
    """Root of the project's files: ``PROJECT_DATA_DIR``, else ``data/`` beside the DAGs folder."""
    configured = os.environ.get("PROJECT_DATA_DIR")
    return Path(configured) if configured else Path(dags_folder).resolve().parent / "data"
