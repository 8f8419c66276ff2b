"""OpenTextProcessTrigger (and the async hook under it) against the OpenText sandbox over real HTTP."""

from __future__ import annotations

import asyncio
import gc
import importlib
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import requests
from airflow.triggers.base import TriggerEvent

from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook
from prodigy_opentext.triggers.opentext import OpenTextProcessTrigger
from tests.fixtures.opentext_sandbox import poll_until
from tests.hooks.test_opentext_contract import connection_json

BATCH_APPROVAL = "annotation_batch_approval"
EVENT_TIMEOUT = 120


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch):
    def register(sandbox: Any, **extra: Any) -> OpenTextWorkflowHook:
        monkeypatch.setenv("AIRFLOW_CONN_OPENTEXT_DEFAULT", connection_json(sandbox, **extra))
        return OpenTextWorkflowHook()

    return register


@pytest.fixture
def shared(opentext_sandbox_session: Any, connect):
    """The shared sandbox with a hook on it; faults a test sets are cleared afterwards."""
    try:
        yield opentext_sandbox_session, connect(opentext_sandbox_session)
    finally:
        opentext_sandbox_session.clear_faults()


def start_batch(hook: OpenTextWorkflowHook, regulated: bool = False) -> dict[str, Any]:
    business_key = f"batch-{uuid.uuid4().hex[:10]}"
    return hook.start_process(BATCH_APPROVAL, business_key, {"dataset": "ner_news", "regulated": regulated})


def open_task(sandbox: Any, process_id: str, key: str) -> dict[str, Any]:
    (task,) = [t for t in sandbox.tasks(processInstanceId=process_id) if t["taskDefinitionKey"] == key]
    return task


def decide(sandbox: Any, process_id: str, key: str, outcome: str, user: str, comment: str) -> None:
    """A reviewer comments, then completes the task (as OpenText's task forms do)."""
    path = f"/process-instances/{process_id}/comments"
    assert sandbox.request("POST", path, user=user, json={"message": comment}).ok
    sandbox.complete(open_task(sandbox, process_id, key)["id"], outcome, user)


def fault_applications(sandbox: Any) -> list[int]:
    return [
        rule["applied"] for rule in requests.get(f"{sandbox.url}/sandbox/faults", timeout=10).json()["faults"]
    ]


async def still_waiting(waiting: asyncio.Task, seconds: float = 1.0) -> bool:
    """Give the trigger a few polls, then report whether it is still waiting."""
    await asyncio.sleep(seconds)
    return not waiting.done()


def first_event(trigger: OpenTextProcessTrigger) -> asyncio.Task[TriggerEvent]:
    return asyncio.create_task(asyncio.wait_for(anext(trigger.run()), EVENT_TIMEOUT))


def test_serialize_rebuilds_the_same_trigger() -> None:
    deadline = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    trigger = OpenTextProcessTrigger("p-1", "sme_review", None, "ot", 5.0, deadline, 60.0)
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert classpath == "prodigy_opentext.triggers.opentext.OpenTextProcessTrigger"


def test_waits_through_throttling_and_revoked_tokens_until_the_task_is_decided(shared) -> None:
    sandbox, hook = shared
    process = start_batch(hook, regulated=True)
    trigger = OpenTextProcessTrigger(
        process["id"], task_definition_key="compliance_review", poll_interval=0.2
    )

    async def scenario() -> TriggerEvent:
        waiting = first_event(trigger)
        assert await still_waiting(waiting)
        await asyncio.to_thread(
            decide, sandbox, process["id"], "sme_review", "approved", "sme@example.com", "ok"
        )
        assert await still_waiting(waiting), "an earlier task's decision must not end the wait"
        faults = [{"status": 429, "retry_after": 1, "times": 1}, {"status": 503, "times": 2}]
        await asyncio.to_thread(sandbox.set_faults, faults)
        await asyncio.to_thread(poll_until, lambda: fault_applications(sandbox) == [1, 2], 60, 0.1, "faults")
        await asyncio.to_thread(sandbox.clear_faults)
        await asyncio.to_thread(sandbox.revoke_tokens)
        assert await still_waiting(waiting)
        comment = "Contains patient names: not for training"
        await asyncio.to_thread(
            decide, sandbox, process["id"], "compliance_review", "rejected", "officer@example.com", comment
        )
        return await waiting

    event = asyncio.run(scenario())
    assert event.payload["status"] == "decided"
    decision = event.payload["decision"]
    assert decision["process_instance_id"] == process["id"]
    assert (decision["task_definition_key"], decision["outcome"], decision["approver"]) == (
        "compliance_review",
        "rejected",
        "officer@example.com",
    )
    assert (decision["ended"], decision["end_activity_id"]) == (True, "end_rejected")
    assert [(c["author"], c["message"]) for c in decision["comments"]] == [
        ("sme@example.com", "ok"),
        ("officer@example.com", "Contains patient names: not for training"),
    ]
    assert decision["decided_at"]


def test_waits_for_a_decision_variable(shared) -> None:
    _, hook = shared
    process = start_batch(hook)
    trigger = OpenTextProcessTrigger(process["id"], decision_variable="release_verdict", poll_interval=0.2)

    async def scenario() -> TriggerEvent:
        waiting = first_event(trigger)
        assert await still_waiting(waiting)
        await asyncio.to_thread(hook.set_variables, process["id"], {"release_verdict": "approved"})
        return await waiting

    decision = asyncio.run(scenario()).payload["decision"]
    assert (decision["outcome"], decision["ended"]) == ("approved", False)


def test_survives_a_sandbox_restart_without_starting_a_second_process(opentext_sandbox, connect) -> None:
    hook = connect(opentext_sandbox)
    opentext_sandbox.deploy_project_models()
    process = start_batch(hook)
    trigger = OpenTextProcessTrigger(process["id"], poll_interval=0.2)

    async def scenario() -> TriggerEvent:
        waiting = first_event(trigger)
        assert await still_waiting(waiting)
        await asyncio.to_thread(opentext_sandbox.restart)
        assert await still_waiting(waiting)
        rerun = await asyncio.to_thread(hook.start_process, BATCH_APPROVAL, process["businessKey"])
        assert rerun["id"] == process["id"]
        await asyncio.to_thread(
            decide, opentext_sandbox, process["id"], "sme_review", "approved", "sme@example.com", "ok"
        )
        return await waiting

    decision = asyncio.run(scenario()).payload["decision"]
    assert (decision["outcome"], decision["end_activity_id"]) == ("approved", "end_approved")
    assert len(hook.historic_processes(businessKey=process["businessKey"])) == 1


def test_an_outage_longer_than_the_error_budget_ends_the_wait_with_opentexts_words(shared, connect) -> None:
    sandbox, hook = shared
    process = start_batch(hook)
    connect(sandbox, retry_budget=1)
    sandbox.set_faults(status=503)
    trigger = OpenTextProcessTrigger(process["id"], poll_interval=0.2, error_budget=2)

    event = asyncio.run(asyncio.wait_for(anext(trigger.run()), EVENT_TIMEOUT))
    assert event.payload["status"] == "error"
    assert event.payload["error"]["status"] == 503
    assert "temporarily unavailable" in event.payload["error"]["message"]


def test_an_unknown_process_instance_ends_the_wait_at_once(shared) -> None:
    trigger = OpenTextProcessTrigger("no-such-instance", poll_interval=0.2)
    event = asyncio.run(asyncio.wait_for(anext(trigger.run()), EVENT_TIMEOUT))
    assert event.payload["status"] == "error"
    assert "no-such-instance" in event.payload["error"]["message"]


def test_the_deadline_ends_an_undecided_wait(shared) -> None:
    _, hook = shared
    process = start_batch(hook)
    deadline = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    trigger = OpenTextProcessTrigger(process["id"], poll_interval=0.2, deadline=deadline)
    event = asyncio.run(asyncio.wait_for(anext(trigger.run()), EVENT_TIMEOUT))
    assert event.payload == {"status": "timeout", "deadline": deadline}


WAITS = 20
SME = "sme@example.com"


async def wait_for_each(sandbox: Any, processes: list[str], poll_interval: float, during: Any = None):
    """``len(processes)`` triggers in this loop, started a moment apart as deferrals reach a triggerer;
    ``during`` runs (in a thread) while they wait, then a reviewer decides every instance."""
    waiting = []
    for process_id in processes:
        waiting.append(first_event(OpenTextProcessTrigger(process_id, poll_interval=poll_interval)))
        await asyncio.sleep(0.05)
    if during is not None:
        await asyncio.to_thread(during)
    assert not any(task.done() for task in waiting)
    for process_id in processes:
        await asyncio.to_thread(decide, sandbox, process_id, "sme_review", "approved", SME, "ok")
    return await asyncio.gather(*waiting)


def test_the_waits_of_one_loop_share_one_token_and_one_connection_pool(shared, connect) -> None:
    sandbox, _ = shared
    hook = connect(sandbox, start_settle_seconds=0)
    processes = [start_batch(hook)["id"] for _ in range(WAITS)]
    sandbox.clear_traffic()
    events = asyncio.run(wait_for_each(sandbox, processes, 0.5, during=lambda: time.sleep(1.5)))
    assert [event.payload["status"] for event in events] == ["decided"] * WAITS
    seen = sandbox.traffic("aiohttp")
    assert seen["token_requests"] == 1
    assert seen["api_requests"] >= 4 * WAITS  # every wait polled more than once
    assert seen["connections"] < WAITS / 2, seen  # one pool's keep-alive connections, not one per wait
    gc.collect()
    assert not [s for s in gc.get_objects() if isinstance(s, aiohttp.ClientSession) and not s.closed]


def test_waits_sharing_a_token_resume_after_it_expires_and_after_it_is_revoked(
    opentext_sandbox_factory, connect
) -> None:
    lifetime = 2
    sandbox = opentext_sandbox_factory(token_lifetime=lifetime)
    sandbox.deploy_project_models()
    hook = connect(sandbox, start_settle_seconds=0)
    processes = [start_batch(hook)["id"] for _ in range(WAITS // 2)]
    sandbox.clear_traffic()

    def expire_then_revoke() -> None:
        time.sleep(2 * lifetime)
        sandbox.revoke_tokens()
        time.sleep(1)

    started = time.monotonic()
    events = asyncio.run(wait_for_each(sandbox, processes, 0.3, during=expire_then_revoke))
    elapsed = time.monotonic() - started
    assert [event.payload["status"] for event in events] == ["decided"] * len(processes)
    tokens = sandbox.traffic("aiohttp")["token_requests"]
    # one at the start, one per (refreshed-early) lifetime, one after the revocation: not one per wait
    assert 3 <= tokens <= 2 + elapsed / (0.9 * lifetime), tokens
