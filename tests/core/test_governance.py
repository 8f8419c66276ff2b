"""The governance report built from a real audit log and real release folders: what it says of each
dataset version, its timeline, the chain, the page's charts, and the status written back to OpenText."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from prodigy_opentext.core.audit import AuditLog, verify_audit_log
from prodigy_opentext.core.governance import (
    CONSUMER_ACTION,
    Links,
    TaskStep,
    approval_processes,
    build_report,
    chain_status,
    governance_report_html,
    read_entries,
    read_releases,
    status_records,
)
from prodigy_opentext.core.release import write_release
from prodigy_opentext.core.review_report import DATASET_CARD_NAME, dataset_card_html

DATASET = "brands"
BATCH_PID, SIGNOFF_PID, QA_PID, CASE_PID, REQUEST_PID = "p-batch", "p-signoff", "p-qa", "p-case", "p-request"


def approval(kind: str, pid: str, approver: str, outcome: str = "approved") -> dict:
    return {
        "kind": kind,
        "process_instance_id": pid,
        "business_key": f"{kind}:{DATASET}:b4",
        "outcome": outcome,
        "end_activity_id": "end_approved",
        "approver": approver,
        "decided_at": "2026-03-01T10:00:00.000+0000",
        "comments": [{"author": approver, "message": f"{kind} fine", "time": None}],
    }


def example(i: int, label: str, annotator: str) -> dict:
    return {
        "text": f"Acme {i}",
        "spans": [{"start": 0, "end": 4, "label": label}],
        "answer": "accept",
        "_input_hash": i,
        "_task_hash": 100 + i,
        "_annotator_id": f"{DATASET}-{annotator}",
    }


@pytest.fixture
def recorded(tmp_path: Path) -> dict:
    """What the flows leave after a request, a QA round, an escalation, an approval, a rejected earlier
    batch, a release and a training run: the audit log, a consumer's ledger and the release folder."""
    log = AuditLog(tmp_path / "audit" / "governance.jsonl")
    log.append("airflow", "request_provisioned", DATASET,
               {"process_instance_id": REQUEST_PID, "tasks": 4, "title": "Brands"})  # fmt: skip
    log.append("airflow", "batch_rejected", f"{DATASET}@b2",
               {"signoff": approval("batch_approval", "p-old", "sme@example.com", "rejected")})  # fmt: skip
    log.append("airflow", "qa_round_recorded", f"{DATASET}@b4", {
        "process_instance_id": QA_PID, "round": 1, "reviewer": "qa@example.com", "result": "passed",
        "figures": {"round": 1, "sampled": 3, "failed": 0, "error_rate": 0.0}})  # fmt: skip
    log.append("airflow", "case_adjudicated", f"{DATASET}@b4",
               {"process_instance_id": CASE_PID, "reviewer": "lead@x.com", "adjudicated": 2})  # fmt: skip
    log.append("airflow", "batch_approved", f"{DATASET}@b4",
               {"signoff": approval("batch_approval", BATCH_PID, "sme@example.com")})  # fmt: skip
    source = tmp_path / "annotations.jsonl"
    rows = [example(1, "BRAND", "alice"), example(2, "BRAND", "bob"), example(3, "SHOP", "alice")]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    approvals = [approval("batch_approval", BATCH_PID, "sme@example.com"),
                 approval("release_signoff", SIGNOFF_PID, "rm@example.com")]  # fmt: skip
    release = write_release(
        tmp_path / "data", DATASET, "b4", {"annotations.jsonl": source}, approvals=approvals,
        validation={"success": True}, agreement={"method": "cohen_kappa", "value": 0.8,
                                                 "observed_agreement": 0.9},
        dataset_card=(DATASET_CARD_NAME, dataset_card_html), source_dataset=DATASET,
    )  # fmt: skip
    sha256 = read_releases(tmp_path / "data")[0]["manifest_sha256"]
    log.append("airflow", "release_written", f"{DATASET}@b4",
               {"path": str(release.path), "manifest_sha256": sha256, "approvals": approvals})  # fmt: skip
    key = f"{DATASET}:b4:{sha256}"
    log.append("airflow", "release_announced", f"{DATASET}@b4", {"idempotency_key": key})
    log.append("mlops_release_consumer", CONSUMER_ACTION, f"{DATASET}@b4", {
        "consumer": "mlops_release_consumer", "manifest_sha256": sha256, "idempotency_key": key,
        "mlflow": {"run_id": "r1", "experiment_id": "7", "run_url": "http://mlflow/#/runs/r1"}})  # fmt: skip
    ledger = AuditLog(tmp_path / "consumers" / "other.jsonl")
    ledger.append("other_consumer", "release_consumed", f"{DATASET}@b4", {"idempotency_key": key})
    return {"log": log.path, "data": tmp_path / "data", "ledger": ledger.path, "sha256": sha256}


def report_of(recorded: dict, **options) -> dict:
    verification = verify_audit_log(recorded["log"])
    verdict = (0 if verification.valid else 1, str(verification))
    chain = chain_status(str(recorded["log"]), verification, anchored=True, verdict=verdict)
    history = {
        SIGNOFF_PID: [
            TaskStep(
                task_id="t-7", name="Sign off", assignee="rm@example.com", completed_at="2026-03-01T10:00:00Z"
            )
        ]
    }
    return build_report(
        read_entries(recorded["log"]),
        chain,
        read_releases(recorded["data"]),
        ledgers={str(recorded["ledger"]): read_entries(recorded["ledger"])},
        history=history,
        **options,
    )


def test_each_version_shows_its_approvals_qa_escalation_and_release(recorded: dict) -> None:
    metas = {
        DATASET: {"labels": ["BRAND"], "qa_review": {}, "review": {"status": "approved", "version": "b4"}}
    }
    report = report_of(recorded, metas=metas)
    assert report["chain"]["valid"] and report["problems"] == []
    (dataset,) = report["datasets"]
    assert dataset["name"] == DATASET and dataset["qa_required"]
    assert [r["process_instance_id"] for r in dataset["requests"]] == [REQUEST_PID]
    newest, older = dataset["versions"]
    assert (newest["version"], newest["status"], older["version"], older["status"]) == (
        "b4", "released", "b2", "rejected",
    )  # fmt: skip
    assert newest["qa"] == "round 1: passed" and newest["escalation"] == "1 case(s) decided"
    by_kind = {a["kind"]: a for a in newest["approvals"]}
    assert by_kind["batch_approval"]["approver"] == "sme@example.com"
    assert by_kind["release_signoff"]["task_id"] == "t-7", "the deciding task, from OpenText's history"
    release = newest["release"]
    assert release is not None and release["manifest_matches_log"] and release["card_intact"]
    manifest = json.loads((Path(release["path"]) / "manifest.json").read_text())
    assert release["by_label"] == manifest["label_distribution"] == {"BRAND": 2, "SHOP": 1}
    assert release["release_id"] == f"{DATASET}:b4:{recorded['sha256']}"
    runs = {r["consumer"]: r for r in release["consumers"]}
    assert runs["mlops_release_consumer"]["mlflow_run_id"] == "r1"
    assert runs["mlops_release_consumer"]["matches_release"] is True
    assert runs["other_consumer"]["source"].startswith("ledger ")


def test_the_timeline_holds_every_recorded_event_in_time_order(recorded: dict) -> None:
    report = report_of(recorded)
    timeline = report["timeline"]
    logged = read_entries(recorded["log"])
    assert [e["seq"] for e in timeline if e["source"] == "audit log"] == [e["seq"] for e in logged]
    assert [e["at"] for e in timeline] == sorted(e["at"] for e in timeline)
    assert {e["kind"] for e in timeline} == {
        "labeling",
        "qa",
        "escalation",
        "approval",
        "release",
        "consumer",
    }
    written = next(e for e in timeline if e["action"] == "release_written")
    assert "approved by sme@example.com, rm@example.com" in written["summary"]


def test_a_changed_manifest_or_card_is_a_problem_the_report_names(recorded: dict) -> None:
    (release,) = read_releases(recorded["data"])
    folder = Path(release["path"])
    (folder / "manifest.json").chmod(0o644)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["counts"]["examples"] = 99
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / DATASET_CARD_NAME).chmod(0o644)
    (folder / DATASET_CARD_NAME).write_text("<html>another card</html>")
    problems = report_of(recorded)["problems"]
    assert any("the manifest was changed after the release was written" in p for p in problems), problems
    assert any(f"{DATASET_CARD_NAME} does not match" in p for p in problems), problems
    assert any("used manifest sha256" in p for p in problems), "the consumer used the manifest before"


def test_a_broken_chain_is_shown_first_and_loudly(recorded: dict) -> None:
    lines = recorded["log"].read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace('"passed"', '"failed"')
    recorded["log"].write_text("".join(lines))
    report = report_of(recorded)
    assert report["chain"]["broken_line"] == 3 and not report["chain"]["valid"]
    assert report["problems"][0].startswith(f"audit log {recorded['log']}: audit log broken at entry 3")
    html = governance_report_html(report, Links(None, lambda r: "card.html"))
    assert html.index('id="audit-chain"') < html.index("<h2>Releases")
    assert re.search(
        r'<p id="audit-chain" class="bad alarm" data-valid="false"><b>AUDIT CHAIN BROKEN at line 3', html
    )
    assert "entry 2</td>" in html and "entry 3 (NOT verified)" in html and "entry 4 (NOT verified)" in html


def test_the_page_charts_the_manifest_figures_and_links_to_opentext_and_cards(recorded: dict) -> None:
    report = report_of(recorded)
    html = governance_report_html(
        report, Links("http://inbox.test/inbox/", lambda r: f"/cards/{r['dataset']}/{r['version']}")
    )
    labels = re.search(r'<figure id="labels-brands-b4">.*?</figure>', html, re.S)
    assert labels is not None
    bars = dict(re.findall(r'data-label="([^"]+)" data-value="([^"]+)"', labels.group(0)))
    assert bars == {"BRAND": "2", "SHOP": "1"}
    assert 'href="http://inbox.test/inbox/tasks/t-7"' in html
    assert f'href="http://inbox.test/inbox/processes/{BATCH_PID}"' in html
    assert 'href="/cards/brands/b4"' in html and 'href="http://mlflow/#/runs/r1"' in html
    assert "{&quot;" not in html and '{"' not in html.split("</style>")[1], "no raw JSON on the page"


def test_the_approval_processes_are_those_the_log_records(recorded: dict) -> None:
    assert approval_processes(read_entries(recorded["log"])) == ["p-old", BATCH_PID, SIGNOFF_PID]


def test_status_records_name_each_process_once_with_the_release(recorded: dict) -> None:
    records = {r["process_instance_id"]: r for r in status_records(report_of(recorded))}
    assert set(records) == {BATCH_PID, SIGNOFF_PID, REQUEST_PID, "p-old"}
    released = records[SIGNOFF_PID]["variables"]
    assert released == {
        "governance_status": "released",
        "dataset_version": f"{DATASET}@b4",
        "release_id": f"{DATASET}:b4:{recorded['sha256']}",
        "manifest_sha256": recorded["sha256"],
    }
    assert records[REQUEST_PID]["variables"] == released, "a request gets its dataset's latest release"
    assert records["p-old"]["variables"]["governance_status"] == "rejected"
    assert records[BATCH_PID]["comment"] == (
        f"Governance: {DATASET}@b4 is released; release id {DATASET}:b4:{recorded['sha256']}, "
        f"manifest sha256 {recorded['sha256']}."
    )
    assert status_records(report_of(recorded)) == list(records.values()), "the same on every build"
