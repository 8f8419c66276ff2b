"""Flows 1 and 3 end to end: the project's DAGs run by ``dag.test()`` against both sandboxes.

Simulated annotators answer through the Prodigy sandbox's HTTP API; a reviewer thread decides in the
OpenText sandbox once the approval task exists. Nothing of the flows is stubbed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from prodigy_opentext.audit import verify_audit_log
from prodigy_opentext.governance import BATCH_APPROVAL_PROCESS, RELEASE_SIGNOFF_PROCESS, business_key
from tests.fixtures.airflow_db import task_states
from tests.fixtures.background import acting_in_background
from tests.fixtures.opentext_sandbox import poll_until

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
DEMO_TASKS = REPO / "include" / "demo" / "tasks.jsonl"
REVIEW_TIMEOUT = 180
SME = "sme@example.com"
RELEASE_MANAGER = "release-manager@example.com"

pytestmark = pytest.mark.slow


@pytest.fixture
def flows(airflow_db, opentext_sandbox_session, prodigy_home, tmp_path, monkeypatch):
    """Both sandboxes as the DAGs' connections, and the project's DAGs serialized for ``dag.test()``."""
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    sandbox = opentext_sandbox_session
    monkeypatch.setenv("PROJECT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv(
        "AIRFLOW_CONN_OPENTEXT_DEFAULT",
        json.dumps(
            {
                "conn_type": "opentext_workflow",
                "host": sandbox.url,
                "login": sandbox.client_id,
                "password": sandbox.client_secret,
                "extra": {"tenant_id": sandbox.tenant},
            }
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_PRODIGY_DEFAULT",
        json.dumps(
            {
                "conn_type": "prodigy",
                "extra": {
                    "db": "sqlite",
                    "db_settings": {"sqlite": {"name": "prodigy.db", "path": str(prodigy_home)}},
                },
            }
        ),
    )
    bag = DagBag(dag_folder=str(DAGS))
    assert not bag.import_errors
    sync_bag_to_db(bag, "dags-folder", None)
    return {"dags": bag.dags, "sandbox": sandbox, "data": tmp_path / "data"}


@pytest.fixture
def annotated_dataset(prodigy_server, run_prodigy, tmp_path) -> Callable[..., str]:
    """``annotated_dataset(**behaviour)``: a new dataset answered by two simulated annotators, ready."""
    from prodigy_opentext.hooks.prodigy import ProdigyHook

    def make(tasks: int = 12, **behaviour: float) -> str:
        name = f"brands_{uuid.uuid4().hex[:8]}"
        source = tmp_path / f"{name}.jsonl"
        source.write_text("".join(DEMO_TASKS.read_text().splitlines(keepends=True)[:tasks]))
        url = prodigy_server(name, source, feed_overlap=True)
        rates = {"disagree": 0, "reject": 0, "ignore": 0, "flag": 0, **behaviour}
        run_prodigy(
            "annotate", "--url", url, "--dataset", name, "--sessions", "alice,bob", "--seed", "7",
            *[arg for key, value in rates.items() for arg in (f"--{key}", str(value))],
        )  # fmt: skip
        hook = ProdigyHook()
        hook.set_meta(name, {"labels": ["BRAND"], "review": {"status": "ready"}})
        return name

    return make


def reviewer(sandbox, key: str, outcome: str, user: str, comment: str):
    """While the block runs, a reviewer decides the open task of the process with businessKey ``key``."""

    def decide() -> None:
        (task,) = poll_until(
            lambda: sandbox.tasks(processInstanceBusinessKey=key), REVIEW_TIMEOUT, 0.5, f"a task of {key}"
        )
        sandbox.complete(task["id"], outcome, user, comment=comment)

    return acting_in_background(decide, timeout=REVIEW_TIMEOUT)


def historic(sandbox, process_key: str, key: str) -> list[dict[str, Any]]:
    body = sandbox.request(
        "GET", "/historic-process-instances", params={"processDefinitionKey": process_key, "businessKey": key}
    ).json()
    return body.get("_embedded", {}).get("historicProcessInstances", [])


def batch_version(dataset: str) -> str:
    from prodigy_opentext.hooks.prodigy import ProdigyHook

    return f"b{ProdigyHook().last_example_id(dataset)}"


def release_runs(dataset: str, version: str) -> list[Any]:
    from airflow.models.dagrun import DagRun

    return DagRun.find(dag_id="dataset_release", run_id=f"release__{dataset}__{version}")


def test_approved_batch_is_released_with_its_approvals_and_validation(flows, annotated_dataset):
    sandbox, dags, data = flows["sandbox"], flows["dags"], flows["data"]
    dataset = annotated_dataset()
    version = batch_version(dataset)
    approval_key = business_key(BATCH_APPROVAL_PROCESS, dataset, version)

    with reviewer(sandbox, approval_key, "approved", SME, "Spans look right"):
        run = dags["annotation_batch_approval"].test(run_conf={"dataset": dataset})
    assert run.state == "success", task_states(run)
    assert len(historic(sandbox, BATCH_APPROVAL_PROCESS, approval_key)) == 1
    from prodigy_opentext.hooks.prodigy import ProdigyHook

    review = ProdigyHook().get_meta(dataset)["review"]
    assert (review["status"], review["version"]) == ("approved", version)
    assert review["signoff"]["approver"] == SME
    assert [c["message"] for c in review["signoff"]["comments"]] == ["Spans look right"]
    assert len(release_runs(dataset, version)) == 1

    rerun = dags["annotation_batch_approval"].test(run_conf={"dataset": dataset})
    assert rerun.state == "success", task_states(rerun)
    assert len(historic(sandbox, BATCH_APPROVAL_PROCESS, approval_key)) == 1, (
        "a rerun started a second process"
    )

    signoff_key = business_key(RELEASE_SIGNOFF_PROCESS, dataset, version)
    with reviewer(sandbox, signoff_key, "approved", RELEASE_MANAGER, "Release it"):
        release = dags["dataset_release"].test(run_conf={"dataset": dataset, "version": version})
    assert release.state == "success", task_states(release)
    manifest = json.loads((data / "releases" / dataset / version / "manifest.json").read_text())
    approvals = {a["kind"]: a for a in manifest["approvals"]}
    assert approvals["batch_approval"]["approver"] == SME
    assert approvals["release_signoff"]["approver"] == RELEASE_MANAGER
    assert manifest["validation"]["success"] is True
    assert manifest["counts"]["examples"] == 12
    assert manifest["label_distribution"] == {"BRAND": 12}

    again = dags["dataset_release"].test(run_conf={"dataset": dataset, "version": version})
    assert again.state == "success", task_states(again)
    assert json.loads((data / "releases" / dataset / version / "manifest.json").read_text()) == manifest

    audit = data / "audit" / "governance.jsonl"
    assert verify_audit_log(audit).valid
    actions = [json.loads(line)["action"] for line in audit.read_text().splitlines()]
    assert actions == ["batch_approved", "release_written"]


def test_rejected_batch_is_marked_for_rework_and_never_released(flows, annotated_dataset):
    sandbox, dags, data = flows["sandbox"], flows["dags"], flows["data"]
    dataset = annotated_dataset()
    version = batch_version(dataset)
    approval_key = business_key(BATCH_APPROVAL_PROCESS, dataset, version)

    with reviewer(sandbox, approval_key, "rejected", SME, "Relabel the sneaker brands"):
        run = dags["annotation_batch_approval"].test(run_conf={"dataset": dataset})
    assert run.state == "success", task_states(run)
    assert task_states(run)["start_release"] == "skipped"
    from prodigy_opentext.hooks.prodigy import ProdigyHook

    review = ProdigyHook().get_meta(dataset)["review"]
    assert review["status"] == "rework"
    assert review["rework"]["comments"] == ["Relabel the sneaker brands"]
    assert release_runs(dataset, version) == []

    claimed = dags["dataset_release"].test(
        run_conf={"dataset": dataset, "version": version, "approved": True}
    )
    assert claimed.state == "failed"
    assert task_states(claimed)["check_batch_approval"] == "failed"
    assert not (data / "releases" / dataset).exists()


def test_release_without_or_with_revoked_approval_is_refused(flows, annotated_dataset):
    sandbox, dags, data = flows["sandbox"], flows["dags"], flows["data"]
    never_reviewed = annotated_dataset(tasks=4)
    version = batch_version(never_reviewed)
    run = dags["dataset_release"].test(
        run_conf={"dataset": never_reviewed, "version": version, "approved": True, "approver": SME}
    )
    assert run.state == "failed"
    assert task_states(run)["check_batch_approval"] == "failed"
    assert run.get_task_instance("check_batch_approval").try_number == 1, "a refusal is not retried"

    revoked = annotated_dataset(tasks=4)
    version = batch_version(revoked)
    approval_key = business_key(BATCH_APPROVAL_PROCESS, revoked, version)
    with reviewer(sandbox, approval_key, "approved", SME, "ok"):
        assert dags["annotation_batch_approval"].test(run_conf={"dataset": revoked}).state == "success"
    # The data owner reopens the review in OpenText: the newer, undecided instance revokes the approval.
    sandbox.start_process(BATCH_APPROVAL_PROCESS, approval_key, {"dataset": revoked, "regulated": False})
    run = dags["dataset_release"].test(run_conf={"dataset": revoked, "version": version})
    assert run.state == "failed"
    assert task_states(run)["check_batch_approval"] == "failed"
    assert not (data / "releases" / revoked).exists()
