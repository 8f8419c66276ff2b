"""Regulated content access (flow 5) end to end: ``dag.test()`` against both sandboxes.

A case's content waits in the holding area until a compliance officer grants access naming the annotators;
until then Prodigy's database holds none of it. Once granted it is masked and served to those sessions only;
the case is completed with metadata (never a text) when a release holds its tasks. A cancelled case
freezes its dataset; a denied one, bad content, a self-grant or content changed after the check load
nothing.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from prodigy_opentext.core.regulated import EMAIL_MASK, PHONE_MASK, REGULATED_PROCESS
from tests.fixtures.airflow_db import task_states
from tests.fixtures.opentext_sandbox import PROJECT_MODELS, OpenTextSandbox
from tests.flows.support import ANNOTATORS, batch_version, publish
from tests.flows.test_intake import comments_of, variables_of
from tests.hooks.test_opentext_contract import connection_json

OFFICER = "officer@example.com"
REQUESTER = "requester@example.com"
TEXTS = [
    "Patient Jane Roe asked about her Zara order; call her back on +44 20 7946 0958.",
    "Please e-mail jane.roe@example.org about the Uniqlo refund she claimed.",
    "The Gucci store manager confirmed the warranty claim of the patient.",
    "Mr Smith wants the H&M claims desk to ring (555) 123-4567 before Friday.",
]
SECRETS = ["Jane Roe", "7946 0958", "jane.roe@example.org", "123-4567", "Mr Smith"]
"""Fragments of the content that must appear nowhere but in the holding area and the served stream."""


def open_case(sandbox: OpenTextSandbox, name: str, source: str, **more: Any) -> str:
    variables = {
        "title": f"Claims {name}",
        "dataset": name,
        "content_source": source,
        "classification": "confidential-health",
        "task_type": "ner",
        "labels": ["BRAND"],
        "instructions": "Mark every brand name.",
        "annotators": list(ANNOTATORS.values()),
        "annotations_per_task": 2,
        **more,
    }
    return sandbox.start_process(REGULATED_PROCESS, f"case-{uuid.uuid4().hex[:8]}", variables)["id"]


def decide_access(sandbox: OpenTextSandbox, pid: str, outcome: str, allowed: list[str] | None) -> None:
    (task,) = sandbox.tasks(processInstanceId=pid)
    assert task["taskDefinitionKey"] == "access_approval", task
    named = {"allowed_annotators": allowed} if allowed is not None else None
    sandbox.complete(task["id"], outcome, OFFICER, comment=f"access {outcome}", task_variables=named)


def database_text(prodigy_home: Path) -> str:
    """Every row of every table of Prodigy's database, as text."""
    with sqlite3.connect(prodigy_home / "prodigy.db") as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert {"dataset", "example", "link"} <= set(tables), tables
        rows = [row for table in tables for row in db.execute(f'SELECT * FROM "{table}"')]
    cells = (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for row in rows for v in row)
    return "\n".join(cells)


def sent_back(sandbox: OpenTextSandbox, pid: str) -> str:
    """Everything the case holds in OpenText: its variables and its comments."""
    return json.dumps([variables_of(sandbox, pid), comments_of(sandbox, pid)], ensure_ascii=False)


@pytest.mark.slow
def test_content_reaches_prodigy_only_after_access_and_only_metadata_goes_back(
    flows, opentext_sandbox_factory, monkeypatch, prodigy_home, prodigy_server, run_prodigy
) -> None:
    from prodigy_opentext.exceptions import DatasetNotFoundError, DatasetNotGovernable
    from prodigy_opentext.flows.release import (
        check_release_approvals,
        resolve_release_target,
        stage_release_data,
    )
    from prodigy_opentext.hooks.prodigy import ProdigyHook

    sandbox = opentext_sandbox_factory()
    sandbox.deploy(PROJECT_MODELS / f"{REGULATED_PROCESS}.bpmn20.xml")
    monkeypatch.setenv("AIRFLOW_CONN_OPENTEXT_DEFAULT", connection_json(sandbox))
    monkeypatch.delenv("REGULATED_HOLDING_DIR", raising=False)
    monkeypatch.delenv("REGULATED_REDACTION", raising=False)
    dags, data = flows["dags"], flows["data"]
    dag = dags["regulated_content_access"]
    run_prodigy("stats")
    holding = data / "regulated" / "holding"
    holding.mkdir(parents=True)
    (holding / "claims.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    (holding / "changing.jsonl").write_text(json.dumps({"text": TEXTS[2]}) + "\n")
    (holding / "broken.jsonl").write_text(json.dumps({"text": TEXTS[0]}) + "\n{not json\n")
    (holding / "headerless.csv").write_text("Jane Roe,+44 20 7946 0958,jane.roe@example.org\n")
    (holding / "moving.jsonl").write_text(json.dumps({"text": TEXTS[2]}) + "\n")
    tag = uuid.uuid4().hex[:6]
    granted = open_case(sandbox, f"claims_{tag}", "claims.jsonl")
    revoked = open_case(sandbox, f"revoked_{tag}", "claims.jsonl")
    denied = open_case(sandbox, f"denied_{tag}", "claims.jsonl")
    self_granted = open_case(sandbox, f"self_{tag}", "claims.jsonl")
    changed = open_case(sandbox, f"changed_{tag}", "changing.jsonl", annotations_per_task=1)
    broken = open_case(sandbox, f"broken_{tag}", "broken.jsonl")
    unclassified = open_case(sandbox, f"unclassified_{tag}", "claims.jsonl", classification="")
    preset = open_case(sandbox, f"preset_{tag}", "claims.jsonl", allowed_annotators=["mallory@example.com"])
    headerless = open_case(sandbox, f"headerless_{tag}", "headerless.csv")
    moved = open_case(sandbox, f"moved_{tag}", "moving.jsonl", annotations_per_task=1)

    held_run = dag.test()
    assert held_run.state == "success", task_states(held_run)
    case = variables_of(sandbox, granted)
    assert (case["held"], case["tasks"]) == (True, 4) and len(case["content_sha256"]) == 64
    assert variables_of(sandbox, broken)["_end"] == "end_refused"
    assert any("line 2" in c and "nothing was created" in c for c in comments_of(sandbox, broken))
    assert any("classification is empty" in c for c in comments_of(sandbox, unclassified))
    assert any("add a header line" in c for c in comments_of(sandbox, headerless)), "no cell named"
    stored = database_text(prodigy_home)
    assert not [s for s in SECRETS + TEXTS if s in stored], "Prodigy holds none of it before the approval"
    hook = ProdigyHook()
    with pytest.raises(DatasetNotFoundError):
        hook.get_meta(f"claims_{tag}")

    decide_access(sandbox, granted, "granted", [ANNOTATORS["alice"], ANNOTATORS["bob"]])
    decide_access(sandbox, revoked, "granted", list(ANNOTATORS.values()))
    decide_access(sandbox, denied, "denied", [])
    decide_access(sandbox, self_granted, "granted", [OFFICER, ANNOTATORS["alice"]])
    decide_access(sandbox, changed, "granted", [ANNOTATORS["alice"]])
    decide_access(sandbox, preset, "granted", None)
    decide_access(sandbox, moved, "granted", [ANNOTATORS["alice"]])
    (holding / "moving.jsonl").unlink()
    sandbox.request(  # a change of the process's variables after the grant grants nobody anything
        "PUT", f"/process-instances/{granted}/variables/allowed_annotators",
        json={"name": "allowed_annotators", "type": "json", "value": ["mallory@example.com"]},
    )  # fmt: skip
    (holding / "changing.jsonl").write_text(json.dumps({"text": TEXTS[3]}) + "\n")

    loaded_run = dag.test()
    assert loaded_run.state == "success", task_states(loaded_run)
    meta = hook.get_meta(f"claims_{tag}")
    assert meta["regulated"] is True and meta["classification"] == "confidential-health"
    assert meta["access"]["status"] == "granted" and meta["access"]["granted_by"] == OFFICER
    assert meta["sessions"] == ["alice", "bob"] and meta["access"]["content_sha256"] == case["content_sha256"]
    assert meta["redaction"] == {"callable": "mask_contact_details", "tasks_masked": 3}
    served = [json.loads(line)["text"] for line in Path(meta["stream"]).read_text().splitlines()]
    assert served[0].endswith(f"call her back on {PHONE_MASK}.") and EMAIL_MASK in served[1]
    assert served[2] == TEXTS[2], "a text with nothing to mask is loaded as it is"
    assert not [s for s in ("7946 0958", "jane.roe@example.org", "123-4567") if s in "".join(served)]
    assert variables_of(sandbox, denied)["_end"] == "end_denied"
    assert any("granted access to themselves" in c for c in comments_of(sandbox, self_granted))
    assert any("changed after it was checked" in c for c in comments_of(sandbox, changed))
    assert any("names no annotators" in c for c in comments_of(sandbox, preset)), "only the grant names them"
    assert any("does not exist" in c for c in comments_of(sandbox, moved)), "refused, the others go on"
    for name in ("denied", "self", "changed", "broken", "unclassified", "preset", "headerless", "moved"):
        with pytest.raises(DatasetNotFoundError):
            hook.get_meta(f"{name}_{tag}")

    url = prodigy_server(
        f"claims_{tag}", meta["stream"], feed_overlap=True,
        env={"PRODIGY_ALLOWED_SESSIONS": ",".join(meta["sessions"])},
    )  # fmt: skip
    stranger = requests.post(
        f"{url}/get_session_questions", json={"session_id": f"claims_{tag}-mallory"}, timeout=30
    )
    assert stranger.status_code == 403 and "not allowed" in stranger.text, "only the granted sessions"
    run_prodigy(
        "annotate", "--url", url, "--dataset", f"claims_{tag}", "--sessions", "alice,bob",
        "--disagree", 0, "--reject", 0, "--ignore", 0, "--flag", 0,
    )  # fmt: skip

    revoked_meta = hook.get_meta(f"revoked_{tag}")
    revoked_url = prodigy_server(f"revoked_{tag}", revoked_meta["stream"], feed_overlap=True)
    run_prodigy(
        "annotate", "--url", revoked_url, "--dataset", f"revoked_{tag}", "--sessions", "alice,bob",
        "--disagree", 0, "--reject", 0, "--ignore", 0, "--flag", 0,
    )  # fmt: skip
    revoked_target = resolve_release_target(f"revoked_{tag}", batch_version(f"revoked_{tag}"))
    waiting_signoff = stage_release_data(
        revoked_target, data / "staging", "manual_revoked", data / "audit" / "governance.jsonl"
    )
    sandbox.request("DELETE", f"/process-instances/{revoked}", params={"deleteReason": "consent withdrawn"})
    progress_run = dag.test()
    assert progress_run.state == "success", task_states(progress_run)
    frozen = hook.get_meta(f"revoked_{tag}")
    assert frozen["access"]["status"] == "revoked" and frozen["access"]["reason"] == "consent withdrawn"
    assert frozen["sessions"] == [] and not Path(frozen["stream"]).exists(), "not served any more"
    with pytest.raises(DatasetNotGovernable, match="revoked"):
        resolve_release_target(f"revoked_{tag}", "b1")
    with pytest.raises(DatasetNotGovernable, match="consent withdrawn"):
        check_release_approvals(waiting_signoff)  # a release whose sign-off waited is refused too
    version = batch_version(f"claims_{tag}")
    assert variables_of(sandbox, granted)["review_run"] == f"escalation__claims_{tag}__{version}"
    assert [t["taskDefinitionKey"] for t in sandbox.tasks(processInstanceId=granted)] == ["await_release"]

    staged = stage_release_data(
        resolve_release_target(f"claims_{tag}", version),
        data / "staging",
        "manual",
        data / "audit" / "governance.jsonl",
    )
    release = publish(staged, data, "manual")
    closing_run = dag.test()
    assert closing_run.state == "success", task_states(closing_run)
    closed = variables_of(sandbox, granted)
    assert closed["_end"] == "end_closed"
    completion = closed["completion"]
    assert completion["release_version"] == version and completion["examples"] == 4
    assert completion["manifest_sha256"] == release["manifest_sha256"] == closed["manifest_sha256"]
    assert completion["annotators"] == ["alice", "bob"] and completion["first_answer"]
    assert hook.get_meta(f"claims_{tag}")["access"]["status"] == "closed", "nothing left to revoke"
    cases = (granted, revoked, self_granted, changed, headerless, moved, preset)
    everything_sent = "".join(sent_back(sandbox, pid) for pid in cases)
    audit_text = (data / "audit" / "governance.jsonl").read_text()
    leaked = [t for t in SECRETS + TEXTS + served if t in everything_sent + audit_text]
    assert not leaked, "OpenText and the audit log get metadata only, never a text"

    again = dag.test()
    assert again.state == "success", task_states(again)
    assert len(Path(meta["stream"]).read_text().splitlines()) == 4, "a rerun loads nothing twice"
