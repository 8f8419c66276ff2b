"""Flow 1, batch approval, end to end: ``annotation_batch_approval`` by ``dag.test()`` against both sandboxes.

An approved batch, recorded and released, is the first half of ``tests/flows/test_release.py``; here a
rejection marks the batch for rework and nothing is ever released.
"""

from __future__ import annotations

import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from prodigy_opentext.core.approvals import BATCH_APPROVAL_PROCESS, judged
from prodigy_opentext.core.audit import AuditLog
from prodigy_opentext.core.batches import business_key
from prodigy_opentext.failures import ConnectionMissing, DatasetRefused, NameRefused, RowsQuarantined
from prodigy_opentext.flows.batch_approval import (
    batch_to_review,
    find_ready_batches,
    prepare_review_package,
    record_review_decision,
    release_run,
    supersede_older_reviews,
)
from prodigy_opentext.flows.release import resolve_release_target
from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook
from tests.fixtures.airflow_db import as_a_task, task_states
from tests.fixtures.opentext_sandbox import poll_until
from tests.flows.support import SME, batch_version, release_runs, reviewer
from tests.hooks import prodigy_support
from tests.hooks.prodigy_support import execute_sql, sample_rows

prodigy_sqlite_conn = prodigy_support.prodigy_sqlite_conn


@pytest.mark.slow
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


@pytest.mark.parametrize("name", ["../releases/victim", "/tmp/outside"])
def test_a_name_that_cannot_be_a_folder_is_refused_before_anyone_is_asked(
    name, prodigy_sqlite_conn, opentext, tmp_path
):
    """Before: such a name passed approval and sign-off, then failed (retried) at publish, and wrote
    review packages outside the data folder on the way."""
    from prodigy_opentext.hooks.prodigy import ProdigyHook

    hook = ProdigyHook()
    rows = [dict(row, answer="accept") for row in sample_rows("textcat_docs_issues", 3)]
    for dataset in (name, "plain_batch"):
        hook.add_examples(dataset, rows)
        hook.set_meta(dataset, {"labels": ["DOCUMENTATION"], "review": {"status": "ready"}})

    found = find_ready_batches()
    assert [batch["dataset"] for batch in found] == ["plain_batch"], "the others still go on"
    review = hook.get_meta(name)["review"]
    assert review["status"] == "refused" and "cannot name a folder" in review["reason"]
    assert [batch["dataset"] for batch in find_ready_batches()] == ["plain_batch"], "not picked up again"

    with pytest.raises(NameRefused, match="cannot name a folder") as refused:
        batch_to_review(name)
    assert isinstance(refused.value, AirflowFailException), "retrying cannot change a name"
    with pytest.raises(NameRefused):
        resolve_release_target(name, "b1")
    assert not any(tmp_path.rglob("answers.jsonl")) and not Path("/tmp/outside").exists()


def add_answers(dataset: str, offset: int, count: int) -> None:
    """``count`` more answers in ``dataset`` (a new version), from the real textcat export."""
    from prodigy_opentext.hooks.prodigy import ProdigyHook

    rows = sample_rows("textcat_docs_issues", offset + count)[offset:]
    ProdigyHook().add_examples(dataset, [dict(row, answer="accept") for row in rows])
    ProdigyHook().set_meta(dataset, {"labels": ["DOCUMENTATION"]})


def start_review(hook, package) -> str:
    request = package["process"]
    return hook.start_process(
        BATCH_APPROVAL_PROCESS, request["business_key"], request["variables"], request["process_name"]
    )["id"]


def test_a_grown_dataset_withdraws_its_older_review(prodigy_sqlite_conn, opentext, tmp_path: Path) -> None:
    """Before: the older version's review stayed open in the inbox after the dataset grew."""
    dataset = f"grown_{uuid.uuid4().hex[:8]}"
    add_answers(dataset, 0, 3)
    older = prepare_review_package(batch_to_review(dataset), tmp_path / "review", tmp_path / "audit.jsonl")
    older_id = start_review(opentext, older)
    add_answers(dataset, 3, 2)
    newer = prepare_review_package(batch_to_review(dataset), tmp_path / "review", tmp_path / "audit.jsonl")
    assert newer["version"] != older["version"]

    assert supersede_older_reviews(newer) == [older_id]
    assert supersede_older_reviews(newer) == [], "withdrawn once"
    withdrawn = opentext.get_historic_process(older_id)
    assert withdrawn["deleteReason"] == f"superseded by {newer['version']}"
    (comment,) = [c["message"] for c in opentext.list_comments(older_id)]
    assert f"review {newer['version']} instead" in comment

    audit = tmp_path / "audit.jsonl"
    with as_a_task():
        recorded = record_review_decision(older, judged(opentext.read_decision(older_id)), audit)
    assert recorded["approved"] is False
    from prodigy_opentext.hooks.prodigy import ProdigyHook

    review = ProdigyHook().get_meta(dataset)["review"]
    assert (review["status"], review["version"]) == ("requested", newer["version"]), "the newer review stands"
    assert [entry["action"] for entry in AuditLog(audit).entries()] == ["batch_superseded"]


def test_an_annotator_cannot_approve_their_own_batch(
    prodigy_sqlite_conn, opentext, opentext_sandbox_session, tmp_path: Path
) -> None:
    """Before: OpenText's approval counted whoever gave it, so an annotator who was also an SME could
    approve their own batch and start its release."""
    from prodigy_opentext.hooks.prodigy import ProdigyHook

    dataset, sandbox = f"own_{uuid.uuid4().hex[:8]}", opentext_sandbox_session
    session = {"_annotator_id": f"{dataset}-alice", "_session_id": f"{dataset}-alice", "answer": "accept"}
    ProdigyHook().add_examples(
        dataset, [dict(row, **session) for row in sample_rows("textcat_docs_issues", 3)]
    )
    ProdigyHook().set_meta(dataset, {"labels": ["DOCUMENTATION"]})
    with pytest.raises(DatasetRefused, match="session\\(s\\) alice name no OpenText user"):
        prepare_review_package(batch_to_review(dataset), tmp_path / "review", tmp_path / "audit.jsonl")

    ProdigyHook().set_meta(dataset, {"annotator_emails": {"alice": "alice.sme@example.com"}})
    package = prepare_review_package(batch_to_review(dataset), tmp_path / "review", tmp_path / "audit.jsonl")
    assert package["annotators"] == ["alice.sme@example.com"]
    process_id = start_review(opentext, package)
    sandbox.set_user_groups("alice.sme@example.com", ["annotation-sme"])
    (task,) = sandbox.tasks(processInstanceId=process_id)
    sandbox.complete(task["id"], "approved", "alice.sme@example.com", comment="mine, and fine")

    audit = tmp_path / "audit.jsonl"
    with as_a_task():
        recorded = record_review_decision(package, judged(opentext.read_decision(process_id)), audit)
    assert recorded["approved"] is False and release_run(recorded)["skip_reason"]
    review = ProdigyHook().get_meta(dataset)["review"]
    assert review["status"] == "refused"
    assert "alice.sme@example.com decided 'sme_review' but annotated this batch" in review["reason"]
    assert [entry["action"] for entry in AuditLog(audit).entries()] == ["batch_approval_refused"]


def test_two_runs_of_one_batch_at_once_make_one_process_and_one_audit_entry(
    prodigy_sqlite_conn, opentext, opentext_sandbox_session, tmp_path: Path
) -> None:
    """Before: two batch-approval runs for one dataset created two processes and two batch_approved
    entries. Each run's steps here race the other's, through the real sandbox, database and audit log."""
    dataset = f"raced_{uuid.uuid4().hex[:8]}"
    add_answers(dataset, 0, 3)
    audit = tmp_path / "audit.jsonl"
    barrier, started = threading.Barrier(2), []

    def one_run(_: int) -> tuple[str, dict]:
        barrier.wait()
        package = prepare_review_package(
            batch_to_review(dataset), tmp_path / "review", tmp_path / "audit.jsonl"
        )
        process_id = start_review(OpenTextWorkflowHook(), package)
        started.append(process_id)
        decision = poll_until(lambda: OpenTextWorkflowHook().read_decision(process_id), 60, 0.2, "a decision")
        with as_a_task():
            return process_id, record_review_decision(package, judged(decision), audit)

    key = business_key(BATCH_APPROVAL_PROCESS, dataset, batch_to_review(dataset)["version"])
    with ThreadPoolExecutor(max_workers=2) as pool:
        running = [pool.submit(one_run, n) for n in range(2)]
        poll_until(lambda: len(started) == 2, 60, 0.2, "both runs to have started their review")
        (task,) = opentext_sandbox_session.tasks(processInstanceBusinessKey=key)
        opentext_sandbox_session.complete(task["id"], "approved", SME, comment="ok")
        results = [future.result(timeout=120) for future in running]
    assert len({process_id for process_id, _ in results}) == 1
    entries = list(AuditLog(audit).entries())
    assert [entry["action"] for entry in entries] == ["batch_approved"], [e["details"] for e in entries]


@pytest.mark.slow
def test_each_ready_batch_gets_a_run_of_its_own_once(flows) -> None:
    """Before: one scheduled run reviewed every ready batch and allowed no second run, so a batch that
    became ready while another waited (up to 72 h) for its reviewers waited too. Each ready batch gets its
    escalation run (which then starts its approval run: tests/flows/test_escalation.py)."""
    from airflow.models.dagrun import DagRun

    from prodigy_opentext.hooks.prodigy import ProdigyHook

    names = [f"ready_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for offset, name in enumerate(names):
        add_answers(name, 3 * offset, 3)
        ProdigyHook().set_meta(name, {"labels": ["DOCUMENTATION"], "review": {"status": "ready"}})
    expected = {f"escalation__{name}__{batch_to_review(name)['version']}" for name in names}

    for _ in range(2):  # found ready twice: still one run per batch
        run = flows["dags"]["annotation_ready_batches"].test()
        assert run.state == "success", task_states(run)
    started = [r for r in DagRun.find(dag_id="label_escalation") if r.run_id in expected]
    assert sorted(r.run_id for r in started) == sorted(expected), "each batch is settled, then approved"
    assert all(r.conf["request_approval"] is True for r in started)
    assert flows["dags"]["annotation_batch_approval"].max_active_runs > 1, "batches wait side by side"


def test_what_retrying_cannot_change_fails_before_anyone_is_asked(
    prodigy_sqlite_conn, opentext, monkeypatch, tmp_path: Path
) -> None:
    """Before: each of these failed only at release time (after approval and sign-off), and was retried."""
    from prodigy_opentext.hooks.prodigy import ProdigyHook

    hook = ProdigyHook()
    unlabelled = f"unlabelled_{uuid.uuid4().hex[:8]}"
    hook.add_examples(
        unlabelled, [dict(row, answer="accept") for row in sample_rows("textcat_docs_issues", 2)]
    )
    hook.set_meta(unlabelled, {"review": {"status": "ready"}})
    failures = {
        "no label scheme": (lambda: batch_to_review(unlabelled), DatasetRefused, 'set "labels" in its meta'),
        "unknown dataset": (
            lambda: batch_to_review("no_such_dataset"),
            DatasetRefused,
            "create it in Prodigy",
        ),
    }
    for what, (call, kind, words) in failures.items():
        with pytest.raises(kind, match=re.escape(words)) as failed:
            call()
        assert isinstance(failed.value, AirflowFailException), f"{what} is retried"
    assert [batch["dataset"] for batch in find_ready_batches()] == []
    assert hook.get_meta(unlabelled)["review"]["status"] == "refused", (
        "found ready, it is marked, not retried"
    )

    add_answers("quarantined_batch", 0, 3)
    with pytest.raises(DatasetRefused, match="has no version 'b999999'"):
        resolve_release_target("quarantined_batch", "b999999")
    (example_id,) = execute_sql(prodigy_sqlite_conn, "SELECT MAX(id) FROM example")[0]
    execute_sql(
        prodigy_sqlite_conn, "UPDATE example SET content = ? WHERE id = ?", (b"{not json", example_id)
    )
    with pytest.raises(RowsQuarantined, match="quarantine") as quarantined:
        prepare_review_package(
            batch_to_review("quarantined_batch"), tmp_path / "review", tmp_path / "audit.jsonl"
        )
    assert isinstance(quarantined.value, AirflowFailException)

    monkeypatch.delenv("AIRFLOW_CONN_OPENTEXT_DEFAULT")
    with pytest.raises(ConnectionMissing, match="AIRFLOW_CONN_OPENTEXT_DEFAULT") as missing:
        batch_to_review("quarantined_batch")
    assert "'opentext_default' is not defined" in str(missing.value)
