"""Helpers of the flow tests: a reviewer acting in OpenText, what OpenText and Airflow recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.fixtures.airflow_db import as_a_task
from tests.fixtures.background import acting_in_background
from tests.fixtures.opentext_sandbox import poll_until

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
DEMO_TASKS = REPO / "include" / "demo" / "tasks.jsonl"
REVIEW_TIMEOUT = 180
SME = "sme@example.com"
RELEASE_MANAGER = "rm@example.com"
ANNOTATORS = {"alice": "alice@example.com", "bob": "bob@example.com"}
"""The simulated annotators' sessions and who they are in OpenText (the datasets' ``annotator_emails``)."""


def reviewer(sandbox, key: str, outcome: str, user: str, comment: str):
    """While the block runs, a reviewer decides the open task of the process with businessKey ``key``."""

    def decide() -> None:
        (task,) = poll_until(
            lambda: sandbox.tasks(processInstanceBusinessKey=key), REVIEW_TIMEOUT, 0.5, f"a task of {key}"
        )
        sandbox.complete(task["id"], outcome, user, comment=comment)

    return acting_in_background(decide, timeout=REVIEW_TIMEOUT)


def released(sandbox, dags, dataset: str) -> tuple[str, Any]:
    """The dataset's batch approved by the SME, then released with the release manager's sign-off: the
    batch's version and the successful ``dataset_release`` run."""
    from prodigy_opentext.core.approvals import BATCH_APPROVAL_PROCESS, RELEASE_SIGNOFF_PROCESS
    from prodigy_opentext.core.batches import business_key
    from tests.fixtures.airflow_db import task_states

    version = batch_version(dataset)
    with reviewer(sandbox, business_key(BATCH_APPROVAL_PROCESS, dataset, version), "approved", SME, "Fine"):
        approval = dags["annotation_batch_approval"].test(run_conf={"dataset": dataset})
    assert approval.state == "success", task_states(approval)
    signoff_key = business_key(RELEASE_SIGNOFF_PROCESS, dataset, version)
    with reviewer(sandbox, signoff_key, "approved", RELEASE_MANAGER, "Release it"):
        release = dags["dataset_release"].test(run_conf={"dataset": dataset, "version": version})
    assert release.state == "success", task_states(release)
    return version, release


def publish(
    staged: Any,
    release_root: Path,
    run_id: str,
    *,
    approvals: list[dict[str, Any]] | None = None,
    audit_path: Path | None = None,
) -> Any:
    """The staged batch released under ``release_root`` (validation passed) as the release DAG's publish
    step releases it, from a task; the audit log defaults to ``<release_root>/audit/governance.jsonl``."""
    from prodigy_opentext.flows.release import publish_release

    with as_a_task():
        return publish_release(
            staged,
            {"success": True},
            approvals or [],
            release_root=release_root,
            audit_path=audit_path or release_root / "audit" / "governance.jsonl",
            run_id=run_id,
        )


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
