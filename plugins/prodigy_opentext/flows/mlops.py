"""What the MLOps consumer records when it trains on a release: the training run that used it, in MLflow.

DAG ``mlops_release_consumer`` (``dags/mlops_release_consumer.py``), which verifies releases with the
consumer steps of :mod:`prodigy_opentext.flows.release`; hook
:class:`~prodigy_opentext.hooks.mlflow.MLflowTrackingHook`; tests ``tests/flows/test_mlops.py``.

Each release the consumer loads becomes an MLflow dataset input of its training run (digest: the
manifest's sha256, source: the release folder's URI), and the audit log records which run used which
release version (``release_used_for_training``), which the governance report reads. Without the
``mlflow_default`` connection the release is loaded as before and only the log says so.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prodigy_opentext.core.payloads import TrainingSet
from prodigy_opentext.failures import ConnectionMissing
from prodigy_opentext.flows._shared import record_in_audit_log
from prodigy_opentext.flows.release import consume_release
from prodigy_opentext.hooks.mlflow import MLflowRun, MLflowTrackingHook

log = logging.getLogger(__name__)

MLFLOW_CONN_ID = MLflowTrackingHook.default_conn_name
USED_FOR_TRAINING = "release_used_for_training"
"""The audit entry saying which MLflow run used which release (read by the governance report)."""


class TrainedRelease(TrainingSet):
    """A loaded release and the MLflow run that used it (None without the ``mlflow_default`` connection)."""

    mlflow: MLflowRun | None


def train_on_release(
    release: Mapping[str, Any],
    ledger: Path,
    consumer: str,
    audit_path: Path,
    mlflow_conn_id: str = MLFLOW_CONN_ID,
) -> TrainedRelease:
    """Load a verified release (noted once in the consumer's ledger), then record its training run.

    A failure to reach MLflow fails the task after the load; its retry loads nothing twice (the ledger)
    and finds the run MLflow already holds.
    """
    loaded = consume_release(release, ledger, consumer)
    return TrainedRelease(**loaded, mlflow=log_training_input(release, consumer, audit_path, mlflow_conn_id))


def log_training_input(
    release: Mapping[str, Any], consumer: str, audit_path: Path, mlflow_conn_id: str = MLFLOW_CONN_ID
) -> MLflowRun | None:
    """Log the release as the dataset input of ``consumer``'s training run in MLflow, once, and record
    which run used it in the audit log; None (and a log line) when the connection is not defined."""
    hook = MLflowTrackingHook(mlflow_conn_id)
    try:
        _ = hook.settings  # the connection, read and checked; no call made
    except ConnectionMissing:
        log.info("no %r connection: the training run is not recorded in MLflow", mlflow_conn_id)
        return None
    key, subject = release["idempotency_key"], f"{release['dataset']}@{release['version']}"
    sha256 = manifest_sha256(release)
    run = hook.log_dataset_input(
        {"release.idempotency_key": key, "release.consumer": consumer},
        name=subject,
        sha256=sha256,
        source_uri=Path(release["path"]).resolve().as_uri(),
        run_name=f"{consumer} {subject}",
        profile={
            "examples": release["counts"]["examples"],
            "label_distribution": release.get("label_distribution"),
            "approvals": [approval.get("kind") for approval in release.get("approvals") or []],
        },
        tags={
            "release.dataset": release["dataset"],
            "release.version": release["version"],
            "release.manifest_sha256": sha256,
            "mlflow.source.type": "JOB",
            "mlflow.source.name": consumer,
        },
    )
    details = {"consumer": consumer, "manifest_sha256": sha256, "idempotency_key": key, "mlflow": dict(run)}
    record_in_audit_log(
        audit_path, USED_FOR_TRAINING, subject, details, event_key=f"{USED_FOR_TRAINING}:{consumer}:{key}"
    )
    log.info("%s trained %s: MLflow run %s", consumer, subject, run["run_url"])
    return run


def manifest_sha256(release: Mapping[str, Any]) -> str:
    """The sha256 of the release's manifest as the consumer verified it: the last part of its
    idempotency key ``<dataset>:<version>:<manifest sha256>``."""
    return str(release["idempotency_key"]).rsplit(":", 1)[-1]
