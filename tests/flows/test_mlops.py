"""The MLOps consumer records the release it trains on in MLflow, once, and the audit log says so.

A real release (written by the release flow's own step, its approvals decided in the OpenText sandbox) is
announced on the ``annotation_releases`` asset and consumed by ``mlops_release_consumer`` under
``dag.test()``; what MLflow recorded is read back through its REST API from a real tracking server.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from prodigy_opentext.core.audit import verify_audit_log
from prodigy_opentext.flows.mlops import USED_FOR_TRAINING, train_on_release
from prodigy_opentext.flows.release import verified_release
from prodigy_opentext.hooks.mlflow import DIGEST_LENGTH
from tests.fixtures.airflow_db import as_a_task, task_states
from tests.fixtures.mlflow_server import MLflowRest, dataset_inputs, run_tags
from tests.flows.support import publish
from tests.flows.test_release import approved_in_opentext, staged

CONSUMER = "mlops_release_consumer"


def announce(release: dict[str, Any]) -> int:
    """An ``annotation_releases`` asset event carrying ``release``, made as Airflow's REST API makes one."""
    from airflow.assets.manager import AssetManager
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        asset = session.scalar(select(AssetModel).where(AssetModel.name == "annotation_releases"))
        event = AssetManager().register_asset_change(asset=asset, extra=release, session=session)
        assert event is not None
        session.flush()
        return event.id


@contextmanager
def consuming(event_ids: list[int]) -> Iterator[None]:
    """While the block runs, each new consumer run consumes these asset events, as the scheduler makes an
    asset-triggered run consume the events that triggered it (``dag.test()`` makes a manual run)."""
    from airflow.models.asset import association_table
    from airflow.models.dagrun import DagRun
    from sqlalchemy import event, insert

    def attach(mapper: Any, connection: Any, run: DagRun) -> None:
        if run.dag_id == CONSUMER:
            connection.execute(
                insert(association_table), [{"dag_run_id": run.id, "event_id": e} for e in event_ids]
            )

    event.listen(DagRun, "after_insert", attach)
    try:
        yield
    finally:
        event.remove(DagRun, "after_insert", attach)


def audit_entries(path: Path, action: str) -> list[dict[str, Any]]:
    return [entry for entry in map(json.loads, path.read_text().splitlines()) if entry["action"] == action]


@pytest.fixture
def release(flows, tmp_path: Path) -> dict[str, Any]:
    """A release of a new dataset written under the DAGs' data folder, approved in the OpenText sandbox."""
    dataset, data = f"trained_{uuid.uuid4().hex[:8]}", flows["data"]
    return publish(
        {**staged(tmp_path / "staged", ["BRAND", "BRAND", "PRODUCT"]), "dataset": dataset},
        data,
        "manual__1",
        approvals=approved_in_opentext(flows["sandbox"], dataset, "b12"),
    )


@pytest.mark.slow
def test_the_consumer_logs_the_release_it_trains_on_as_an_mlflow_dataset_input(
    flows, release, mlflow_server: MLflowRest, monkeypatch
) -> None:
    experiment = f"consumer-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_server.connection(experiment))
    consumer, data = flows["dags"][CONSUMER], flows["data"]

    with consuming([announce(release)]):
        run = consumer.test()
    assert run.state == "success", task_states(run)

    sha256 = hashlib.sha256(Path(release["manifest"]).read_bytes()).hexdigest()
    key = f"{release['dataset']}:b12:{sha256}"
    (trained,) = mlflow_server.runs(experiment, f"tags.`release.idempotency_key` = '{key}'")
    (logged,) = dataset_inputs(trained)
    assert logged["digest"] == sha256[:DIGEST_LENGTH]
    assert logged["source"] == {"uri": Path(release["path"]).resolve().as_uri()}
    assert (logged["name"], logged["context"]) == (f"{release['dataset']}@b12", "training")
    assert logged["profile"]["sha256"] == sha256
    assert logged["profile"]["label_distribution"] == {"BRAND": 2, "PRODUCT": 1}
    tags = run_tags(trained)
    assert (tags["release.consumer"], tags["release.manifest_sha256"]) == (CONSUMER, sha256)

    audit = data / "audit" / "governance.jsonl"
    (used,) = audit_entries(audit, USED_FOR_TRAINING)
    run_id, experiment_id = trained["info"]["run_id"], trained["info"]["experiment_id"]
    assert used["subject"] == f"{release['dataset']}@b12"
    assert used["details"] == {
        "consumer": CONSUMER,
        "manifest_sha256": sha256,
        "idempotency_key": key,
        "mlflow": {
            "run_id": run_id,
            "experiment_id": experiment_id,
            "run_url": f"{mlflow_server.url}/#/experiments/{experiment_id}/runs/{run_id}",
        },
    }
    assert verify_audit_log(audit).valid

    with consuming([announce(release)]):
        again = consumer.test()
    assert again.state == "success", task_states(again)
    verified = verified_release(release, data)
    with as_a_task():
        retried = train_on_release(verified, data / "consumers" / f"{CONSUMER}.jsonl", CONSUMER, audit)
    assert retried["mlflow"] is not None and retried["mlflow"]["run_id"] == run_id, "a retry finds the run"
    assert len(mlflow_server.runs(experiment)) == 1, "announced twice, retried: still one training run"
    assert len(dataset_inputs(mlflow_server.run(run_id))) == 1
    assert len(audit_entries(audit, USED_FOR_TRAINING)) == 1


def test_without_the_mlflow_connection_the_release_is_loaded_as_before(flows, release, monkeypatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_MLFLOW_DEFAULT", raising=False)
    data = flows["data"]
    audit = data / "audit" / "governance.jsonl"
    with as_a_task():
        loaded = train_on_release(verified_release(release, data), data / "ledger.jsonl", CONSUMER, audit)
    assert (loaded["total"], loaded["mlflow"]) == (3, None)
    assert audit_entries(audit, USED_FOR_TRAINING) == []
