"""Annotation request intake (flow 4) end to end: ``dag.test()`` against both sandboxes.

Requests are started in OpenText and approved (or rejected) by a data owner there; the DAG provisions the
approved ones in priority, then due-date order, refuses those whose source it cannot take (naming the rows,
creating nothing), posts the annotation progress on each request and closes the one whose team finished,
starting its batch's review.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from prodigy_opentext.core.audit import AuditLog
from prodigy_opentext.core.intake import INTAKE_PROCESS
from tests.fixtures.airflow_db import task_states
from tests.fixtures.opentext_sandbox import PROJECT_MODELS, OpenTextSandbox
from tests.flows.support import ANNOTATORS, DEMO_TASKS, batch_version
from tests.hooks.test_opentext_contract import connection_json

OWNER = "owner@example.com"


def brand_tasks(count: int) -> list[dict[str, Any]]:
    return [json.loads(line) for line in DEMO_TASKS.read_text().splitlines()[:count]]


def request_variables(name: str, source: str, **more: Any) -> dict[str, Any]:
    return {
        "title": f"Brands in {name}",
        "dataset": name,
        "source": source,
        "task_type": "ner",
        "labels": ["BRAND"],
        "instructions": "Mark every brand name.",
        "priority": "normal",
        "approvers": [OWNER],
        "annotators": list(ANNOTATORS.values()),
        "annotations_per_task": 2,
        **more,
    }


def submit(sandbox: OpenTextSandbox, variables: dict[str, Any], outcome: str = "approved") -> str:
    """A business user's request, decided by a data owner; returns the process id."""
    instance = sandbox.start_process(INTAKE_PROCESS, f"request-{uuid.uuid4().hex[:8]}", variables)
    (task,) = sandbox.tasks(processInstanceId=instance["id"])
    sandbox.complete(task["id"], outcome, OWNER, comment=f"{outcome}: worth labelling")
    return instance["id"]


def variables_of(sandbox: OpenTextSandbox, pid: str) -> dict[str, Any]:
    body = sandbox.request(
        "GET",
        "/historic-process-instances",
        params={"processInstanceId": pid, "includeProcessVariables": "true"},
    ).json()["_embedded"]["historicProcessInstances"][0]
    return {"_end": body.get("endActivityId"), **{v["name"]: v["value"] for v in body["variables"]}}


def comments_of(sandbox: OpenTextSandbox, pid: str) -> list[str]:
    return [c["message"] for c in sandbox.request("GET", f"/process-instances/{pid}/comments").json()]


@pytest.mark.slow
def test_approved_requests_become_datasets_and_close_when_their_team_is_done(
    flows, opentext_sandbox_factory, monkeypatch, prodigy_server, run_prodigy
) -> None:
    from airflow.models.dagrun import DagRun

    from prodigy_opentext.exceptions import DatasetNotFoundError
    from prodigy_opentext.hooks.prodigy import ProdigyHook

    sandbox = opentext_sandbox_factory()
    sandbox.deploy(PROJECT_MODELS / f"{INTAKE_PROCESS}.bpmn20.xml")
    monkeypatch.setenv("AIRFLOW_CONN_OPENTEXT_DEFAULT", connection_json(sandbox))
    dags, data = flows["dags"], flows["data"]
    run_prodigy("stats")  # Prodigy is installed and has its database, as where annotation happens
    intake = data / "intake"
    intake.mkdir(parents=True)
    tag = uuid.uuid4().hex[:6]
    tasks = brand_tasks(6)
    (intake / "brands.jsonl").write_text("".join(json.dumps(t) + "\n" for t in [*tasks, tasks[0]]))
    (intake / "plain.txt").write_text("Zara opens a store.\n\nUniqlo too.\n")
    (intake / "broken.jsonl").write_text(json.dumps(tasks[0]) + "\n{not json\n" + json.dumps(tasks[1]) + "\n")
    (intake / "no_text.csv").write_text("text,source\nGucci rises,feed\n,feed\n")
    (intake / "empty.jsonl").write_text("")
    foreign = {**tasks[2], "spans": [{"start": 0, "end": 3, "label": "ORG"}]}
    (intake / "foreign.jsonl").write_text(json.dumps(tasks[1]) + "\n" + json.dumps(foreign) + "\n")

    normal_late = submit(sandbox, request_variables(f"late_{tag}", "brands.jsonl", due_date="2027-03-01"))
    high = submit(
        sandbox, request_variables(f"high_{tag}", "brands.jsonl", priority="high", due_date="2027-06-01")
    )
    soon = submit(sandbox, request_variables(f"soon_{tag}", "plain.txt", due_date="2027-01-15"))
    refused = {
        submit(sandbox, request_variables(f"broken_{tag}", "broken.jsonl")): "line 2",
        submit(sandbox, request_variables(f"nocol_{tag}", "no_text.csv")): "line 3: field 'text': empty text",
        submit(sandbox, request_variables(f"empty_{tag}", "empty.jsonl")): "the source holds no tasks",
        submit(sandbox, request_variables(f"foreign_{tag}", "foreign.jsonl")): "task 2: label(s) ORG",
        submit(sandbox, request_variables(f"outside_{tag}", "/etc/hostname")): "outside the intake folder",
        submit(
            sandbox, request_variables(f"fields_{tag}", "brands.jsonl", task_type="poem")
        ): "task_type 'poem'",
    }
    rejected = submit(sandbox, request_variables(f"rejected_{tag}", "brands.jsonl"), outcome="rejected")
    attached = submit(sandbox, request_variables(f"attached_{tag}", "attachment:reviews.csv", priority="low"))
    csv_source = b"text,channel\nZara opens a store.,web\nUniqlo too.,app\n"
    sandbox.request(
        "POST", f"/process-instances/{attached}/attachments", files={"file": ("reviews.csv", csv_source)}
    )
    refused[submit(sandbox, request_variables(f"unattached_{tag}", "attachment:none.csv"))] = "no attachment"

    first = dags["annotation_request_intake"].test()
    assert first.state == "success", task_states(first)
    hook = ProdigyHook()

    audit = AuditLog(data / "audit" / "governance.jsonl")
    provisioned = [e["subject"] for e in audit.entries() if e["action"] == "request_provisioned"]
    assert provisioned == [f"high_{tag}", f"soon_{tag}", f"late_{tag}", f"attached_{tag}"], (
        "priority, due date"
    )
    meta = hook.get_meta(f"high_{tag}")
    assert meta["request"]["process_instance_id"] == high and meta["labels"] == ["BRAND"]
    assert meta["annotator_emails"] == ANNOTATORS and meta["sessions"] == ["alice", "bob"]
    assert (meta["instructions"], meta["annotations_per_task"], meta["tasks"]) == (
        "Mark every brand name.",
        2,
        6,
    )
    stream = [json.loads(line) for line in Path(meta["stream"]).read_text().splitlines()]
    assert [t["text"] for t in stream] == [t["text"] for t in tasks], "the source's tasks, duplicate dropped"
    assert all(t["tokens"] and t["meta"]["request"] == high for t in stream)
    plain = [
        json.loads(line) for line in Path(hook.get_meta(f"soon_{tag}")["stream"]).read_text().splitlines()
    ]
    assert [t["text"] for t in plain] == ["Zara opens a store.", "Uniqlo too."]
    assert [tok["text"] for tok in plain[1]["tokens"]] == ["Uniqlo", "too", "."], "tokenised for ner"
    assert variables_of(sandbox, high)["tasks"] == 6 and variables_of(sandbox, high)["duplicates"] == 1
    assert variables_of(sandbox, soon)["provisioned"] is True
    from_attachment = Path(hook.get_meta(f"attached_{tag}")["stream"]).read_text().splitlines()
    assert [(t["text"], t["meta"]["channel"]) for t in map(json.loads, from_attachment)] == [
        ("Zara opens a store.", "web"),
        ("Uniqlo too.", "app"),
    ], "the attached file's tasks"

    for pid, named in refused.items():
        assert variables_of(sandbox, pid)["_end"] == "end_source_refused"
        assert any(named in c and "nothing was created" in c for c in comments_of(sandbox, pid)), (
            named,
            comments_of(sandbox, pid),
        )
    for name in ("broken", "nocol", "empty", "foreign", "outside", "fields", "rejected", "unattached"):
        with pytest.raises(DatasetNotFoundError):
            hook.get_meta(f"{name}_{tag}")
    assert variables_of(sandbox, rejected)["_end"] == "end_rejected"

    url = prodigy_server(
        f"high_{tag}", meta["stream"], feed_overlap=True, env={"PRODIGY_ALLOWED_SESSIONS": "alice,bob"}
    )
    stranger = requests.post(
        f"{url}/get_session_questions", json={"session_id": f"high_{tag}-mallory"}, timeout=30
    )
    assert stranger.status_code == 403, "only the request's team annotates"
    run_prodigy(
        "annotate", "--url", url, "--dataset", f"high_{tag}", "--sessions", "alice,bob",
        "--disagree", 0, "--reject", 0, "--ignore", 0, "--flag", 0,
    )  # fmt: skip

    second = dags["annotation_request_intake"].test()
    assert second.state == "success", task_states(second)
    done = variables_of(sandbox, high)
    version = batch_version(f"high_{tag}")
    assert done["_end"] == "end_annotated" and done["batch_version"] == version
    assert done["progress"]["answers"] == 12 and done["progress"]["by_annotator"] == {"alice": 6, "bob": 6}
    assert done["review_run"] == f"escalation__high_{tag}__{version}"
    assert DagRun.find(dag_id="label_escalation", run_id=done["review_run"]), "the batch's review started"
    assert hook.get_meta(f"high_{tag}")["review"]["status"] == "ready"
    waiting = sandbox.request("GET", f"/process-instances/{normal_late}/variables").json()
    progress = next(v["value"] for v in waiting if v["name"] == "progress")
    assert (progress["answers"], progress["target"], progress["percent"]) == (0, 12, 0.0)

    third = dags["annotation_request_intake"].test()
    assert third.state == "success", task_states(third)
    assert [e["subject"] for e in audit.entries() if e["action"] == "request_provisioned"] == provisioned
    assert len(Path(meta["stream"]).read_text().splitlines()) == 6, "a rerun creates nothing twice"
    assert [d["name"] for d in hook.list_datasets() if d["name"].startswith(f"high_{tag}")].count(
        f"high_{tag}"
    ) == 1
