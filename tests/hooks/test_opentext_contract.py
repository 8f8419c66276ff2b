"""Contract tests: OpenTextWorkflowHook against the OpenText sandbox over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from prodigy_opentext.exceptions import OpenTextError, OpenTextNotFoundError, OpenTextUnavailableError
from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook
from tests.fixtures.opentext_sandbox import PASSWORD

MODELS = Path(__file__).resolve().parents[2] / "include" / "bpmn"
BATCH_APPROVAL = "annotation_batch_approval"


def connection_json(sandbox: Any, client_secret: str | None = None, **extra: Any) -> str:
    """An ``opentext_workflow`` connection to a sandbox, as ``AIRFLOW_CONN_*`` JSON."""
    return json.dumps(
        {
            "conn_type": "opentext_workflow",
            "host": sandbox.url,
            "login": sandbox.client_id,
            "password": client_secret or sandbox.client_secret,
            "extra": {"tenant_id": sandbox.tenant, **extra},
        }
    )


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch):
    """``connect(sandbox, conn_id=..., client_secret=..., **extra)``: register a connection, get a hook."""

    def register(sandbox: Any, conn_id: str = "opentext_default", **options: Any) -> OpenTextWorkflowHook:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", connection_json(sandbox, **options))
        return OpenTextWorkflowHook(conn_id)

    return register


@pytest.fixture
def hook(opentext_sandbox_session: Any, connect) -> OpenTextWorkflowHook:
    return connect(opentext_sandbox_session)


@pytest.fixture
def hook_of(opentext_sandbox_session: Any, connect):
    """``hook_of(email)``: a hook acting as that person of the sandbox's directory (password grant)."""

    def as_user(email: str) -> OpenTextWorkflowHook:
        conn_id = "opentext_" + email.split("@")[0].replace(".", "_")
        options = {"grant_type": "password", "username": email, "password": PASSWORD}
        return connect(opentext_sandbox_session, conn_id=conn_id, **options)

    return as_user


@pytest.fixture
def sandbox(opentext_sandbox_session: Any) -> Iterator[Any]:
    """The shared sandbox for a test that injects faults; they are cleared afterwards."""
    try:
        yield opentext_sandbox_session
    finally:
        opentext_sandbox_session.clear_faults()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def model_xml(key: str, task_name: str = "Review") -> str:
    """A one-task process with its own key, so tests sharing one sandbox do not collide."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:flowable="http://flowable.org/bpmn"
             targetNamespace="http://prodigy-opentext/tests">
  <process id="{key}" name="{key}" isExecutable="true">
    <startEvent id="start"/>
    <sequenceFlow id="f1" sourceRef="start" targetRef="review"/>
    <userTask id="review" name="{task_name}" flowable:candidateGroups="reviewers"/>
    <sequenceFlow id="f2" sourceRef="review" targetRef="done"/>
    <endEvent id="done"/>
  </process>
</definitions>
"""


def fault_applications(sandbox: Any) -> list[int]:
    return [
        rule["applied"] for rule in requests.get(f"{sandbox.url}/sandbox/faults", timeout=10).json()["faults"]
    ]


def test_connection_reports_success_and_opentexts_refusal(opentext_sandbox_session: Any, connect) -> None:
    ok, message = connect(opentext_sandbox_session).test_connection()
    assert ok, message
    assert opentext_sandbox_session.tenant in message
    wrong = connect(opentext_sandbox_session, conn_id="opentext_wrong", client_secret="not-the-secret")
    refused, why = wrong.test_connection()
    assert not refused
    assert "401" in why and "invalid_client" in why
    assert "not-the-secret" not in why


def test_deploy_only_when_the_content_changed(hook: OpenTextWorkflowHook, tmp_path: Path) -> None:
    key = unique("deploy")
    path = tmp_path / f"{key}.bpmn"
    path.write_text(model_xml(key))
    first = hook.deploy_model(path)
    assert (first["key"], first["deployed"], first["model"]["version"]) == (key, True, 1)
    assert hook.deploy_model(path)["deployed"] is False
    assert hook.deploy_model(base64.b64encode(path.read_bytes()).decode())["deployed"] is False
    changed = hook.deploy_model(model_xml(key, task_name="Second look"))
    assert (changed["deployed"], changed["model"]["version"]) == (True, 2)
    assert [m["version"] for m in hook.list_models(key)] == [1, 2]
    assert hook.latest_model(key)["version"] == 2


def test_start_process_is_idempotent_on_business_key_running_or_finished(
    hook: OpenTextWorkflowHook, hook_of
) -> None:
    business_key = unique("batch")
    started = hook.start_process(
        BATCH_APPROVAL, business_key, {"dataset": "ner", "regulated": False}, "NER v1"
    )
    assert started["businessKey"] == business_key and started["name"] == "NER v1"
    assert hook.start_process(BATCH_APPROVAL, business_key, {"dataset": "other"})["id"] == started["id"]
    assert [p["id"] for p in hook.find_processes(businessKey=business_key)] == [started["id"]]
    assert hook.get_process(started["id"])["variables"]

    (task,) = hook.list_tasks(processInstanceId=started["id"])
    hook_of("sme@example.com").complete_task(task["id"], "approved")
    assert hook.find_processes(businessKey=business_key) == []
    assert hook.start_process(BATCH_APPROVAL, business_key)["id"] == started["id"]
    (finished,) = hook.historic_processes(businessKey=business_key)
    assert finished["endActivityId"] == "end_approved"
    assert hook.get_historic_process(started["id"])["endTime"]


def test_concurrent_starts_of_one_business_key_leave_one_process(
    opentext_sandbox_session: Any, connect
) -> None:
    """Four workers start the same batch's approval at the same moment: one process stays running, every
    starter gets it, and the duplicates are cancelled saying which one stands."""
    business_key = unique("race")
    barrier = threading.Barrier(4)

    def start(worker: int) -> str:
        hook = connect(opentext_sandbox_session, conn_id=f"opentext_race_{worker}")
        barrier.wait()
        return hook.start_process(BATCH_APPROVAL, business_key, {"dataset": "ner", "regulated": False})["id"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(start, range(4)))
    hook = connect(opentext_sandbox_session)
    running = hook.find_processes(processDefinitionKey=BATCH_APPROVAL, businessKey=business_key)
    assert [process["id"] for process in running] == [got[0]] and set(got) == {got[0]}
    cancelled = [p for p in hook.historic_processes(businessKey=business_key) if p["id"] != got[0]]
    assert all(got[0] in (p.get("deleteReason") or "") for p in cancelled), cancelled


def test_typed_variables_round_trip(hook: OpenTextWorkflowHook) -> None:
    process = hook.start_process(BATCH_APPROVAL, unique("vars"), {"dataset": "ner", "regulated": False})
    due = datetime(2025, 3, 4, 5, 6, 7, 123000, tzinfo=UTC)
    values = {"examples": 1200, "big": 2**40, "agreement": 0.87, "regulated": True, "due": due}
    hook.set_variables(process["id"], {**values, "labels": {"PERSON": 3, "ORG": [1, 2]}, "note": "v2"})
    stored = hook.get_variables(process["id"])
    assert {name: stored[name] for name in values} == values
    assert stored["labels"] == {"PERSON": 3, "ORG": [1, 2]} and stored["note"] == "v2"
    hook.set_variables(process["id"], {"examples": 1300})
    assert hook.get_variables(process["id"])["examples"] == 1300


def test_tasks_claim_delegate_complete_and_history(hook: OpenTextWorkflowHook, hook_of) -> None:
    process = hook.start_process(BATCH_APPROVAL, unique("tasks"), {"dataset": "ner", "regulated": True})
    (task,) = hook.list_tasks(processInstanceId=process["id"], taskDefinitionKey="sme_review")
    sme = hook_of("sme@example.com")
    sme.claim_task(task["id"], "sme@example.com")
    assert hook.get_task(task["id"])["assignee"] == "sme@example.com"
    sme.complete_task(task["id"], "approved", {"checked_examples": 50})

    (compliance,) = hook.list_tasks(processInstanceId=process["id"])
    assert compliance["taskDefinitionKey"] == "compliance_review"
    hook_of("officer@example.com").delegate_task(compliance["id"], "deputy@example.com")
    delegated = hook.get_task(compliance["id"])
    assert (delegated["assignee"], delegated["delegationState"]) == ("deputy@example.com", "pending")

    (done,) = hook.historic_tasks(processInstanceId=process["id"], finished=True)
    assert (done["assignee"], done["outcome"], done["endTime"] is not None) == (
        "sme@example.com",
        "approved",
        True,
    )
    variables = hook.get_variables(process["id"])
    assert (variables["sme_review_outcome"], variables["checked_examples"]) == ("approved", 50)


def test_comments_and_cancel(hook: OpenTextWorkflowHook) -> None:
    process = hook.start_process(BATCH_APPROVAL, unique("comments"), {"dataset": "ner", "regulated": False})
    added = hook.add_comment(process["id"], "Batch 7: 3 disputed spans escalated")
    (listed,) = hook.list_comments(process["id"])
    assert listed["id"] == added["id"] and listed["message"] == "Batch 7: 3 disputed spans escalated"
    assert listed["author"] and listed["time"]

    hook.cancel_process(process["id"], "superseded by batch 8")
    assert hook.get_historic_process(process["id"])["deleteReason"] == "superseded by batch 8"
    with pytest.raises(OpenTextNotFoundError) as missing:
        hook.get_process(process["id"])
    assert missing.value.status == 404
    assert process["id"] in missing.value.exception


def test_task_local_variables_stay_with_the_completed_task(hook: OpenTextWorkflowHook, hook_of) -> None:
    process = hook.start_process(BATCH_APPROVAL, unique("local"), {"dataset": "ner", "regulated": False})
    assert hook.last_completion(process["id"], "sme_review") is None
    (task,) = hook.list_tasks(processInstanceId=process["id"])
    sme = hook_of("sme@example.com")
    sme.claim_task(task["id"], "sme@example.com")
    sme.complete_task(task["id"], "approved", task_variables={"checked": ["a@example.com"]})
    done = hook.last_completion(process["id"], "sme_review")
    assert done is not None and done["assignee"] == "sme@example.com"
    assert done["task_variables"] == {"checked": ["a@example.com"]}
    (ended,) = hook.historic_processes(processInstanceId=process["id"], includeProcessVariables="true")
    assert "checked" not in {v["name"] for v in ended["variables"]}, "local to the task, not the process's"


def test_attachments_upload_list_and_download_their_bytes(hook: OpenTextWorkflowHook) -> None:
    process = hook.start_process(BATCH_APPROVAL, unique("attach"), {"dataset": "ner", "regulated": False})
    content = b'{"text": "Zara opens a store."}\n' + bytes(range(256))
    added = hook.add_attachment(process["id"], "tasks.jsonl", content, "application/x-ndjson")
    (listed,) = hook.list_attachments(process["id"])
    assert (listed["id"], listed["name"], listed["size"]) == (added["id"], "tasks.jsonl", len(content))
    assert listed["type"] == "application/x-ndjson" and listed["userId"] and listed["time"]
    assert hook.attachment_content(process["id"], added["id"]) == content, "the bytes as they were sent"
    with pytest.raises(OpenTextNotFoundError):
        hook.attachment_content(process["id"], "no-such-attachment")


def test_service_errors_carry_opentexts_message(hook: OpenTextWorkflowHook) -> None:
    with pytest.raises(OpenTextError) as refused:
        hook.start_process("no_such_process", unique("missing"))
    assert refused.value.status in (400, 404)
    assert "no_such_process" in str(refused.value)


def test_paging_walks_every_page(opentext_sandbox_session: Any, connect) -> None:
    # twelve different business keys: no start races another, so none waits for one to settle
    hook = connect(opentext_sandbox_session, conn_id="opentext_paging", start_settle_seconds=0)
    key = unique("paging")
    hook.deploy_model(model_xml(key))
    started = {hook.start_process(key, f"{key}-{n}")["id"] for n in range(12)}
    paged = list(hook.paginate("/process-instances", {"processDefinitionKey": key}, count=5))
    assert len(paged) == 12 and {p["id"] for p in paged} == started
    assert len(hook.find_processes(processDefinitionKey=key)) == 12


def test_token_expiring_mid_run_is_refreshed(opentext_sandbox_factory, connect) -> None:
    sandbox = opentext_sandbox_factory(token_lifetime=1)
    hook = connect(sandbox)
    hook.deploy_model(MODELS / "qa_review.bpmn20.xml")
    business_keys = []
    for n in range(6):  # spans several token lifetimes
        business_keys.append(hook.start_process("qa_review", f"qa-{n}")["businessKey"])
        time.sleep(0.4)
    assert sorted(p["businessKey"] for p in hook.find_processes()) == business_keys


def test_revoked_token_is_replaced_once_on_401(sandbox, connect) -> None:
    hook = connect(sandbox)
    business_key = unique("revoked")
    hook.start_process(BATCH_APPROVAL, business_key, {"dataset": "ner", "regulated": False})
    assert sandbox.revoke_tokens() >= 1
    assert len(hook.find_processes(businessKey=business_key)) == 1


def test_429_waits_for_retry_after(sandbox, connect) -> None:
    hook = connect(sandbox)
    hook.find_processes(businessKey="none")
    sandbox.set_faults(status=429, retry_after=1, times=2)
    started = time.monotonic()
    assert hook.find_processes(businessKey="none") == []
    assert time.monotonic() - started >= 2.0  # both Retry-After waits were honoured
    assert fault_applications(sandbox) == [2]


def test_429_beyond_the_retry_budget_raises_with_opentexts_words(sandbox, connect) -> None:
    hook = connect(sandbox, retry_budget=5)
    sandbox.set_faults(status=429, retry_after=60)
    with pytest.raises(OpenTextUnavailableError) as throttled:
        hook.find_processes(businessKey="none")
    assert (throttled.value.status, throttled.value.retry_after) == (429, 60.0)
    assert "Rate limit quota violation" in str(throttled.value)


def test_503_and_dropped_connections_then_recovery(sandbox, connect) -> None:
    hook = connect(sandbox)
    business_key = unique("recovery")
    sandbox.set_faults([{"status": 503, "times": 2}, {"drop_connection": True, "times": 1}])
    process = hook.start_process("qa_review", business_key)
    assert fault_applications(sandbox) == [2, 1]
    sandbox.clear_faults()
    assert [p["id"] for p in hook.historic_processes(businessKey=business_key)] == [process["id"]]


def test_persistent_503_gives_up_within_the_budget(sandbox, connect) -> None:
    hook = connect(sandbox, retry_budget=3)
    sandbox.set_faults(status=503)
    with pytest.raises(OpenTextUnavailableError) as unavailable:
        hook.find_processes(businessKey="none")
    assert unavailable.value.status == 503
    assert "temporarily unavailable" in str(unavailable.value)


def test_a_start_reads_the_history_once_before_and_the_running_instances_once_after(
    hook: OpenTextWorkflowHook, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Running instances are in the history too: one read finds a running or finished instance, and
    the read after the start, of the running instances, is what converges racing starters."""
    sent: list[tuple[str, str]] = []
    send = OpenTextWorkflowHook._send

    def counted(self: OpenTextWorkflowHook, method: str, url: str, **kwargs: Any) -> Any:
        if url != self.settings.token_url:
            sent.append((method, url.rsplit("/workflow/v1", 1)[-1]))
        return send(self, method, url, **kwargs)

    monkeypatch.setattr(OpenTextWorkflowHook, "_send", counted)
    business_key = unique("calls")
    started = hook.start_process(BATCH_APPROVAL, business_key, {"dataset": "ner", "regulated": False})
    assert sent == [
        ("GET", "/historic-process-instances"),
        ("POST", "/process-instances"),
        ("GET", "/process-instances"),
    ]
    sent.clear()
    assert hook.start_process(BATCH_APPROVAL, business_key)["id"] == started["id"]
    assert sent == [("GET", "/historic-process-instances")]
