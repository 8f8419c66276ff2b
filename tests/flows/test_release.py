"""Flow 3, the controlled release: ``dataset_release`` by ``dag.test()`` against both sandboxes, after the
batch approval it needs, and the immutable publish step on its own.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from prodigy_opentext.audit import VariableAnchor
from prodigy_opentext.core.agreement import annotation_agreement
from prodigy_opentext.core.approvals import (
    APPROVAL_PROCESSES,
    BATCH_APPROVAL_PROCESS,
    RELEASE_SIGNOFF_PROCESS,
    judged,
)
from prodigy_opentext.core.audit import verify_audit_log
from prodigy_opentext.core.batches import business_key
from prodigy_opentext.core.payloads import ApprovedVersion
from prodigy_opentext.exceptions import ReleaseConflict
from prodigy_opentext.failures import ReleaseDistrusted, ReleaseRefused, ReleaseVersionTaken
from prodigy_opentext.flows._approvals import verify_approvals
from prodigy_opentext.flows.release import (
    announcement,
    consume_release,
    hand_off_release,
    resolve_release_target,
    stage_release_data,
    unconsumed_releases,
)
from tests.fixtures.airflow_db import as_a_task, task_states
from tests.flows.support import (
    ANNOTATORS,
    RELEASE_MANAGER,
    REPO,
    SME,
    batch_version,
    historic,
    publish,
    release_runs,
    reviewer,
)
from tests.hooks import prodigy_support
from tests.hooks.prodigy_support import sample_rows
from tests.hooks.test_opentext_contract import connection_json
from tests.pages import chart_values

prodigy_sqlite_conn = prodigy_support.prodigy_sqlite_conn


def release_events(dataset: str) -> list[dict]:
    """The extras of the annotation_releases asset events Airflow recorded for ``dataset``."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = select(AssetEvent.extra).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
        extras = session.scalars(query.where(AssetModel.name == "annotation_releases")).all()
    return [extra for extra in extras if (extra or {}).get("dataset") == dataset]


@pytest.mark.slow
def test_approved_batch_is_released_with_its_approvals_and_validation(
    flows, annotated_dataset, mlops_endpoint
):
    sandbox, dags, data = flows["sandbox"], flows["dags"], flows["data"]
    dataset = annotated_dataset()
    version = batch_version(dataset)
    approval_key = business_key(BATCH_APPROVAL_PROCESS, dataset, version)

    with reviewer(sandbox, approval_key, "approved", SME, "Spans look right"):
        run = dags["annotation_batch_approval"].test(run_conf={"dataset": dataset})
    assert run.state == "success", task_states(run)
    assert len(historic(sandbox, BATCH_APPROVAL_PROCESS, approval_key)) == 1
    approval_report = attached_report(historic(sandbox, BATCH_APPROVAL_PROCESS, approval_key)[0]["id"], data)
    assert chart_values(approval_report)["answers-per-label"] == {"BRAND": 24.0}, "both annotators' answers"
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
    assert manifest["agreement"]["method"] == "cohen_kappa" and manifest["agreement"]["n_items"] == 12
    signoff_report = attached_report(historic(sandbox, RELEASE_SIGNOFF_PROCESS, signoff_key)[0]["id"], data)
    assert "Great Expectations suite" in signoff_report, "the sign-off's report shows the validation"
    card = (data / "releases" / dataset / version / "dataset_card.html").read_bytes()
    assert manifest["dataset_card"] == {
        "file": "dataset_card.html",
        "sha256": hashlib.sha256(card).hexdigest(),
    }
    charts = chart_values(card.decode())
    assert charts["answers-per-label"] == {k: float(v) for k, v in manifest["label_distribution"].items()}
    assert charts["answers-per-annotator"] == {
        k: float(v) for k, v in manifest["counts"]["by_annotator"].items()
    }

    again = dags["dataset_release"].test(run_conf={"dataset": dataset, "version": version})
    assert again.state == "success", task_states(again)
    assert task_states(again)["announce"] == "skipped", "an announced release is not announced again"
    assert json.loads((data / "releases" / dataset / version / "manifest.json").read_text()) == manifest

    manifest_bytes = (data / "releases" / dataset / version / "manifest.json").read_bytes()
    key = f"{dataset}:{version}:{hashlib.sha256(manifest_bytes).hexdigest()}"
    assert [event["idempotency_key"] for event in release_events(dataset)] == [key], "one asset event"
    assert [
        (m["headers"]["Idempotency-Key"], m["json"]["idempotency_key"]) for m in mlops_endpoint.received
    ] == [(key, key)], "one hand-off, carrying its idempotency key"

    audit = data / "audit" / "governance.jsonl"
    head = VariableAnchor(audit).anchored_head()
    assert head is not None and head.seq == 4, "the tasks anchored the log's head in the Variable"
    assert verify_audit_log(audit, [head]).valid
    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [e["action"] for e in entries] == [
        "batch_approved",
        "release_written",
        "release_announced",
        "release_handed_off",
    ]
    assert entries[1]["details"]["manifest_sha256"] == hashlib.sha256(manifest_bytes).hexdigest()


def attached_report(process_instance_id: str, data: Path) -> str:
    """The review report attached to a process, checked to carry no path of the Airflow machine in its
    variables (reviewers open the attachment, not a folder they cannot reach)."""
    from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook

    hook = OpenTextWorkflowHook()
    attachments = {a["name"]: a for a in hook.list_attachments(process_instance_id)}
    assert list(attachments) == ["review_report.html"]
    (process,) = hook.historic_processes(processInstanceId=process_instance_id, includeProcessVariables=True)
    variables = {v["name"]: v["value"] for v in process["variables"]}
    assert variables["review_report"] == "review_report.html"
    assert not [name for name, value in variables.items() if str(data) in str(value)], "no local paths"
    report = hook.attachment_content(process_instance_id, attachments["review_report.html"]["id"]).decode()
    assert report.startswith("<!DOCTYPE html>") and "<script" not in report
    return report


@pytest.mark.slow
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


APPROVALS = [{"kind": "batch_approval", "outcome": "approved", "approver": "sme@example.com"}]


def staged(folder: Path, labels: list[str]) -> dict:
    folder.mkdir(parents=True)
    annotations, disputes = folder / "annotations.jsonl", folder / "disputes.jsonl"
    annotations.write_text(
        "".join(
            json.dumps(
                {"text": f"Acme {i}", "label": label, "answer": "accept", "_input_hash": i, "_task_hash": i}
            )
            + "\n"
            for i, label in enumerate(labels)
        )
    )
    disputes.write_text("")
    return {
        "dataset": "brands",
        "version": "b12",
        "annotations": str(annotations),
        "disputes": str(disputes),
        "sessions": ["brands-alice"],
        "adjudications": [],
        "reworked": [],
        "regulated": False,
        "agreement": annotation_agreement([]),
        "licence": "CC-BY-4.0",
    }


def published(tmp_path: Path, staged_data: dict, run_id: str) -> dict:
    data = tmp_path / "data"
    return publish(staged_data, data, run_id, approvals=APPROVALS, audit_path=data / "audit.jsonl")


def test_an_equal_rerun_is_a_no_op_and_other_content_fails_without_retries(tmp_path: Path) -> None:
    first = published(tmp_path, staged(tmp_path / "run1", ["BRAND", "BRAND"]), "manual__1")
    again = published(tmp_path, staged(tmp_path / "run2", ["BRAND", "BRAND"]), "manual__2")
    assert (first["already_released"], again["already_released"]) == (False, True)
    assert again["path"] == first["path"]

    with pytest.raises(ReleaseVersionTaken) as taken:
        published(tmp_path, staged(tmp_path / "run3", ["BRAND", "PRODUCT"]), "manual__3")
    assert isinstance(taken.value, ReleaseConflict) and isinstance(taken.value, AirflowFailException)
    assert "release brands b12 already exists with different content" in str(taken.value)
    assert "file 'annotations.jsonl'" in str(taken.value)
    manifest = json.loads((Path(first["path"]) / "manifest.json").read_text())
    assert manifest["run_id"] == "manual__1", "the existing release stays as it was"


def test_staging_writes_standard_json_where_prodigy_stored_nan(
    prodigy_sqlite_conn, opentext, tmp_path: Path
) -> None:
    """Before: a NaN score stored in Prodigy reached the release as ``NaN``, which only Python reads."""
    from prodigy_opentext.hooks.prodigy import ProdigyHook

    rows = [dict(row, answer="accept") for row in sample_rows("textcat_docs_issues", 3)]
    rows[1]["meta"] = {**rows[1].get("meta", {}), "score": float("nan")}
    hook = ProdigyHook()
    hook.add_examples("scored", rows)
    hook.set_meta("scored", {"labels": ["DOCUMENTATION"]})
    target = resolve_release_target("scored", f"b{hook.last_example_id('scored')}")

    staged = stage_release_data(
        target, tmp_path / "staging", "manual__2026-12-01T10:00:00+00:00", tmp_path / "audit.jsonl"
    )
    assert staged["non_finite_as_null"] == 1
    lines = Path(staged["annotations"]).read_text().splitlines()
    merged = [json.loads(line, parse_constant=pytest.fail) for line in lines]
    assert [task["meta"].get("score", "absent") for task in merged].count(None) == 1
    assert Path(staged["annotations"]).parent == tmp_path / "staging" / "scored" / target["version"] / (
        "manual__2026-12-01T10_00_00_00_00"
    )


def test_a_hand_off_happens_once_unless_it_failed(tmp_path: Path, mlops_endpoint, airflow_db) -> None:
    release = published(tmp_path, staged(tmp_path / "run1", ["BRAND"]), "manual__1")
    audit = tmp_path / "data" / "audit.jsonl"
    mlops_endpoint.statuses = [503]
    with as_a_task(), pytest.raises(AirflowException):
        hand_off_release(release, audit)
    with as_a_task():
        assert hand_off_release(release, audit)["status"] == 200, "the failed hand-off is made again"
        assert hand_off_release(release, audit) is None, "and then never again"
    assert [m["status"] for m in mlops_endpoint.received] == [503, 200]
    assert {m["headers"]["Idempotency-Key"] for m in mlops_endpoint.received} == {release["idempotency_key"]}
    with pytest.raises(AirflowSkipException, match="was announced at"):
        announcement(release, audit)


def approved_in_opentext(sandbox, dataset: str, version: str) -> list[dict]:
    """A batch approval and a release sign-off of ``dataset`` ``version``, decided in OpenText."""
    approvals = []
    for kind, process in APPROVAL_PROCESSES.items():
        key = business_key(process, dataset, version)
        started = sandbox.start_process(
            process, key, {"dataset": dataset, "version": version, "regulated": False}
        )
        (task,) = sandbox.tasks(processInstanceId=started["id"])
        sandbox.complete(task["id"], "approved", SME if kind == "batch_approval" else RELEASE_MANAGER)
        approvals.append({"kind": kind, "process_instance_id": started["id"], "outcome": "approved"})
    return approvals


@pytest.fixture
def consumer(opentext_sandbox_session, monkeypatch, tmp_path: Path):
    """``consumer(dataset, approvals)``: a release written under ``tmp_path/data``; OpenText: the sandbox."""
    monkeypatch.setenv("AIRFLOW_CONN_OPENTEXT_DEFAULT", connection_json(opentext_sandbox_session))

    def release(dataset: str, approvals: list[dict], root: Path = tmp_path / "data") -> dict:
        folder = tmp_path / f"staged-{dataset}-{root.name}"
        return publish(
            {**staged(folder, ["BRAND", "BRAND"]), "dataset": dataset},
            root,
            "manual__1",
            approvals=approvals,
            audit_path=root / "audit.jsonl",
        )

    return release


def test_the_consumer_loads_a_release_once_however_often_it_is_announced(
    consumer, opentext_sandbox_session, tmp_path: Path
) -> None:
    dataset = f"consumed_{uuid.uuid4().hex[:8]}"
    release = consumer(dataset, approved_in_opentext(opentext_sandbox_session, dataset, "b12"))
    ledger, root = tmp_path / "consumer.jsonl", tmp_path / "data"
    announced = {"manifest": release["manifest"], "path": release["path"], "idempotency_key": "forged"}
    fresh = unconsumed_releases([announced, announced], ledger, root)
    assert [r["idempotency_key"] for r in fresh] == [release["idempotency_key"]], "the key comes from disk"
    assert consume_release(fresh[0], ledger, "consumer")["total"] == 2
    assert unconsumed_releases([announced], ledger, root) == []


def test_the_consumer_refuses_a_release_it_cannot_confirm(consumer, opentext_sandbox_session, tmp_path: Path):
    """Before: a self-consistent release with invented approvals, or one written elsewhere, was loaded."""
    ledger, root = tmp_path / "consumer.jsonl", tmp_path / "data"
    forged_name = f"forged_{uuid.uuid4().hex[:8]}"
    invented = [
        {"kind": kind, "process_instance_id": f"invented-{kind}", "outcome": "approved"}
        for kind in APPROVAL_PROCESSES
    ]
    forged = consumer(forged_name, invented)
    with pytest.raises(ReleaseDistrusted, match="no OpenText process") as refused:
        unconsumed_releases([forged], ledger, root)
    assert isinstance(refused.value, AirflowFailException)

    elsewhere_name = f"elsewhere_{uuid.uuid4().hex[:8]}"
    genuine = approved_in_opentext(opentext_sandbox_session, elsewhere_name, "b12")
    elsewhere = consumer(elsewhere_name, genuine, root=tmp_path / "other")
    with pytest.raises(ReleaseDistrusted, match="not a manifest under the release root"):
        unconsumed_releases([elsewhere], ledger, root)

    swapped_name = f"swapped_{uuid.uuid4().hex[:8]}"
    approved_in_opentext(opentext_sandbox_session, swapped_name, "b12")
    swapped = consumer(swapped_name, genuine)  # real approvals, but of another dataset
    with pytest.raises(ReleaseDistrusted, match="but OpenText's is process"):
        unconsumed_releases([swapped], ledger, root)
    assert not ledger.exists() or "release_consumed" not in ledger.read_text()


def decided_batch_approval(sandbox, dataset: str, regulated: bool, decisions: list[tuple]) -> str:
    """A batch approval process for ``dataset`` b7, its open tasks decided in turn as
    ``(outcome, user, variables)``; returns the process id."""
    key = business_key(BATCH_APPROVAL_PROCESS, dataset, "b7")
    process = sandbox.start_process(BATCH_APPROVAL_PROCESS, key, {"dataset": dataset, "regulated": regulated})
    for outcome, user, variables in decisions:
        (task,) = sandbox.tasks(processInstanceId=process["id"])
        sandbox.complete(task["id"], outcome, user, variables=variables)
    return process["id"]


def test_an_approval_counts_only_as_the_task_history_records_it(opentext, opentext_sandbox_session) -> None:
    """Forged through variables a completer sets: before, both were accepted as approvals."""
    sandbox, judge = opentext_sandbox_session, lambda pid: judged(opentext.read_decision(pid))["approved"]

    def check(dataset: str, regulated: bool, annotators: tuple[str, ...] = ()) -> list[dict]:
        target = ApprovedVersion(dataset=dataset, version="b7", regulated=regulated)
        return verify_approvals(target, kinds=("batch_approval",), annotators=annotators)

    skipped = f"skipped_{uuid.uuid4().hex[:8]}"  # regulated, but the SME set regulated=false on completing
    decided_batch_approval(
        sandbox,
        skipped,
        True,
        [("approved", SME, {"regulated": False, "compliance_review_outcome": "approved"})],
    )
    with pytest.raises(ReleaseRefused, match="no completed 'compliance_review' task"):
        check(skipped, regulated=True)

    conflicting = f"conflicting_{uuid.uuid4().hex[:8]}"  # the SME rejected, with outcome=approved beside
    pid = decided_batch_approval(
        sandbox, conflicting, False, [(None, SME, {"sme_review_outcome": "rejected", "outcome": "approved"})]
    )
    assert judge(pid) is False, "the sensor records it rejected, as OpenText ended it"
    with pytest.raises(ReleaseRefused, match="end_rejected"):
        check(conflicting, regulated=False)

    twice = f"twice_{uuid.uuid4().hex[:8]}"  # one person in both groups decides both steps
    sandbox.set_user_groups("two.hats@example.com", ["annotation-sme", "compliance-officers"])
    both = ("approved", "two.hats@example.com", None)
    decided_batch_approval(sandbox, twice, True, [both, both])
    with pytest.raises(ReleaseRefused, match="nobody approves twice in one chain"):
        check(twice, regulated=True)

    own = f"own_{uuid.uuid4().hex[:8]}"  # an annotator of the batch, also an SME, approves it
    sandbox.set_user_groups(ANNOTATORS["alice"], ["annotation-sme"])
    decided_batch_approval(sandbox, own, False, [("approved", ANNOTATORS["alice"], None)])
    with pytest.raises(
        ReleaseRefused, match=re.escape("alice@example.com decided 'sme_review' but annotated this batch")
    ):
        check(own, regulated=False, annotators=tuple(ANNOTATORS.values()))

    genuine = f"genuine_{uuid.uuid4().hex[:8]}"
    pid = decided_batch_approval(
        sandbox, genuine, True, [("approved", SME, None), ("approved", "officer@example.com", None)]
    )
    assert judge(pid) and [a["process_instance_id"] for a in check(genuine, regulated=True)] == [pid]


def test_an_approval_by_someone_outside_the_group_is_refused_even_if_opentext_took_it(
    opentext_sandbox_factory, monkeypatch
) -> None:
    """OpenText refuses a non-member (403); and where a tenant let one through (here a model redeployed
    to offer the SME review to anyone in 'everyone'), the gate still refuses the approval."""
    sandbox = opentext_sandbox_factory()
    monkeypatch.setenv("AIRFLOW_CONN_OPENTEXT_DEFAULT", connection_json(sandbox))
    sandbox.deploy_project_models()
    dataset = f"outsider_{uuid.uuid4().hex[:8]}"
    key = business_key(BATCH_APPROVAL_PROCESS, dataset, "b7")
    process = sandbox.start_process(BATCH_APPROVAL_PROCESS, key, {"dataset": dataset, "regulated": False})
    (task,) = sandbox.tasks(processInstanceId=process["id"])
    refused = sandbox.request(
        "POST",
        f"/tasks/{task['id']}",
        user="qa@example.com",
        json={"action": "complete", "outcome": "approved"},
    )
    assert refused.status_code == 403 and refused.json()["message"] == "Forbidden"
    sandbox.request("DELETE", f"/process-instances/{process['id']}", params={"deleteReason": "test"})

    model = (REPO / "include" / "bpmn" / f"{BATCH_APPROVAL_PROCESS}.bpmn20.xml").read_text()
    opened = model.replace('flowable:candidateGroups="annotation-sme"', 'flowable:candidateGroups="everyone"')
    response = sandbox.request("POST", "/runtime/models", json={"modelType": "xml", "modelContent": opened})
    assert response.status_code == 201, response.text
    sandbox.set_user_groups("anyone@example.com", ["everyone"])
    pid = decided_batch_approval(sandbox, dataset, False, [("approved", "anyone@example.com", None)])
    assert sandbox.historic_instance(pid)["endActivityId"] == "end_approved"
    target = ApprovedVersion(dataset=dataset, version="b7", regulated=False)
    with pytest.raises(ReleaseRefused) as gate:
        verify_approvals(target, kinds=("batch_approval",))
    assert "anyone@example.com decided 'sme_review' but is not a member of 'annotation-sme'" in str(
        gate.value
    )
    assert "offered to ['everyone']" in str(gate.value)
