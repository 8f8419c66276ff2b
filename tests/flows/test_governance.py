"""Flow 7, the governance report: ``governance_report`` by ``dag.test()`` after a real batch approval and
release against both sandboxes; its JSON and page against the audit log and the manifest, the status it
writes back on the OpenText processes, and a tampered audit log failing the run after the report shows it.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from prodigy_opentext.core.governance import REPORT_HTML, REPORT_JSON
from prodigy_opentext.failures import AuditLogTampered
from prodigy_opentext.flows.governance import require_intact_chain
from tests.fixtures.airflow_db import task_states
from tests.flows.support import SME, released
from tests.pages import chart_values

pytestmark = pytest.mark.slow


def latest_report(data: Path, before: set[Path]) -> Path:
    """The folder of the report the last run wrote (one folder per run)."""
    (folder,) = set((data / "reports" / "governance").iterdir()) - before
    return folder


def test_the_report_holds_what_the_flows_recorded_and_opentext_holds_its_status(
    flows, annotated_dataset
) -> None:
    from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook

    sandbox, dags, data = flows["sandbox"], flows["dags"], flows["data"]
    dataset = annotated_dataset()
    version, _ = released(sandbox, dags, dataset)

    (data / "reports" / "governance").mkdir(parents=True, exist_ok=True)
    run = dags["governance_report"].test()
    assert run.state == "success", task_states(run)
    folder = latest_report(data, set())
    report = json.loads((folder / REPORT_JSON).read_text())
    html = (folder / REPORT_HTML).read_text()

    audit = data / "audit" / "governance.jsonl"
    logged = [json.loads(line) for line in audit.read_text().splitlines()]
    assert (
        report["chain"]["valid"] and report["chain"]["entries"] == len(logged) and report["chain"]["anchored"]
    )
    assert report["problems"] == []
    assert [e["seq"] for e in report["timeline"]] == [e["seq"] for e in logged]
    assert [e["action"] for e in report["timeline"]] == [e["action"] for e in logged]

    manifest_path = data / "releases" / dataset / version / "manifest.json"
    manifest, sha256 = (
        json.loads(manifest_path.read_text()),
        hashlib.sha256(manifest_path.read_bytes()).hexdigest(),
    )
    (written,) = [e for e in logged if e["action"] == "release_written"]
    (shown,) = report["releases"]
    assert shown["manifest_sha256"] == sha256 == written["details"]["manifest_sha256"]
    assert shown["release_id"] == f"{dataset}:{version}:{sha256}"
    assert (shown["examples"], shown["by_label"]) == (
        manifest["counts"]["examples"],
        manifest["label_distribution"],
    )
    assert {(a["kind"], a["approver"], a["process_instance_id"]) for a in shown["approvals"]} == {
        (a["kind"], a["approver"], a["process_instance_id"]) for a in manifest["approvals"]
    }
    assert shown["card_intact"] is True
    (versions,) = [d["versions"] for d in report["datasets"] if d["name"] == dataset]
    assert [(v["version"], v["status"]) for v in versions] == [(version, "released")]

    key = f"{dataset}-{version}"
    assert chart_values(html)[f"labels-{key}"] == manifest["label_distribution"]
    assert chart_values(html)[f"annotators-{key}"] == manifest["counts"]["by_annotator"]
    assert chart_values(html)["examples-per-release"] == {
        f"{dataset} {version}": manifest["counts"]["examples"]
    }
    card = folder / re.search(r'<a href="([^"]+)">dataset card \(', html).group(1)
    assert card.resolve() == (manifest_path.parent / "dataset_card.html").resolve()
    inbox = f"{sandbox.url}/inbox"
    for approval_record in manifest["approvals"]:
        assert f'href="{inbox}/processes/{approval_record["process_instance_id"]}"' in html
    deciders = [a["task_id"] for a in shown["approvals"]]
    assert all(deciders) and all(f'href="{inbox}/tasks/{task}"' in html for task in deciders)

    hook = OpenTextWorkflowHook()
    status = f"Governance: {dataset}@{version} is released; release id {shown['release_id']}, "
    status += f"manifest sha256 {sha256}."

    def comments(pid: str) -> list[str]:
        return [c["message"] for c in hook.list_comments(pid) if str(c["message"]).startswith("Governance:")]

    for approval_record in manifest["approvals"]:
        assert comments(approval_record["process_instance_id"]) == [status], "ended processes get a comment"

    rerun = dags["governance_report"].test()
    assert rerun.state == "success", task_states(rerun)
    for approval_record in manifest["approvals"]:
        assert comments(approval_record["process_instance_id"]) == [status], "a rerun adds no second comment"

    lines = audit.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace(SME, "someone.else@example.com")  # the release's approvals, edited
    audit.write_text("".join(lines))
    before = set((data / "reports" / "governance").iterdir())
    tampered = dags["governance_report"].test()
    assert tampered.state == "failed"
    states = task_states(tampered)
    assert (states["write_report"], states["record_in_opentext"], states["verify_audit_chain"]) == (
        "success", "skipped", "failed",
    )  # fmt: skip
    broken = latest_report(data, before)
    shown_broken = json.loads((broken / REPORT_JSON).read_text())
    assert (shown_broken["chain"]["valid"], shown_broken["chain"]["broken_line"]) == (False, 2)
    assert "AUDIT CHAIN BROKEN at line 2" in (broken / REPORT_HTML).read_text()
    written_report = {"chain_valid": False, "chain_summary": shown_broken["chain"]["summary"], "html": "r"}
    with pytest.raises(AuditLogTampered, match=r"broken at entry 2 \(line 2\)"):
        require_intact_chain(written_report)  # type: ignore[arg-type]
