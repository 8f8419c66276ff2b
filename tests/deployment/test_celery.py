"""The project's DAGs end to end under CeleryExecutor, in the topology docker-compose.yaml deploys.

Annotators finish a Prodigy batch (on PostgreSQL); batch approval asks OpenText, a reviewer approves; the
release it starts is validated, signed off by a release manager, written with both approvals in its
manifest, and consumed by the MLOps DAG through the asset event. Every task runs on the Celery worker.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.stories import DAG_IDS
from scripts.stories.batch_approval import SME_REVIEWER
from scripts.stories.release import RELEASE_MANAGER

# Every flow's story on Celery workers takes 5-10 minutes on two shared cores, against pytest's 10-minute
# guard for one test: this one gets 20.
pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(1200)]


def test_batch_approval_to_consumed_release_on_celery_workers(airflow_cluster):
    flow = airflow_cluster.play_stories()
    release, consumed = flow.results["release"], flow.results["consumed"]

    assert {dag_id: run["state"] for dag_id, run in flow.runs.items()} == dict.fromkeys(DAG_IDS, "success")

    manifest = json.loads(Path(release["manifest"]).read_text())
    assert Path(release["path"]).is_relative_to(airflow_cluster.data_dir)
    approvals = {approval["kind"]: approval for approval in manifest["approvals"]}
    assert set(approvals) == {"batch_approval", "release_signoff"}
    assert approvals["batch_approval"]["approver"] == SME_REVIEWER
    assert approvals["release_signoff"]["approver"] == RELEASE_MANAGER
    for kind, decided in zip(("batch_approval", "release_signoff"), flow.approvals, strict=True):
        assert approvals[kind]["process_instance_id"] == decided["process_instance_id"]
        assert approvals[kind]["outcome"] == "approved"
        assert decided["comment"] in [comment["message"] for comment in approvals[kind]["comments"]]

    for approval in flow.approvals:
        waits = approval["airflow_waits"]
        assert any(wait.endswith(" deferred") for wait in waits), f"not deferred while waiting: {waits}"

    assert [loaded["path"] for loaded in consumed] == [release["path"]]
    assert consumed[0]["total"] == release["examples"] > 0

    worker_log = (airflow_cluster.stack.log_dir / "airflow-celery-worker.log").read_text()
    for dag_id, run in flow.runs.items():
        assert f"dag_id={dag_id}/run_id={run['run_id']}/" in worker_log, f"{dag_id} ran no task on the worker"
