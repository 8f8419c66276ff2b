"""Reading a decision: the sync hook (sensor, release check) and the async hook (trigger) against the
OpenText sandbox over real HTTP, each test run through both. They share one probe and one driver, so they
must give the same decision in every case, errors included."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from prodigy_opentext.core.payloads import Decision
from prodigy_opentext.exceptions import OpenTextNotFoundError
from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook
from prodigy_opentext.hooks.opentext_async import OpenTextWorkflowAsyncHook
from tests.hooks.test_opentext_contract import connection_json

BATCH_APPROVAL = "annotation_batch_approval"
SME = "sme@example.com"
Reader = Callable[..., Any]


def read_sync(process_instance_id: str, **watch: str) -> Any:
    return OpenTextWorkflowHook().read_decision(process_instance_id, **watch)


def read_async(process_instance_id: str, **watch: str) -> Any:
    async def read() -> Any:
        async with OpenTextWorkflowAsyncHook() as hook:
            return await hook.read_decision(process_instance_id, **watch)

    return asyncio.run(read())


READERS = {"sync": read_sync, "async": read_async}


@pytest.fixture
def sandbox(opentext_sandbox_session: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The shared sandbox as ``opentext_default``; faults a test sets are cleared afterwards."""
    monkeypatch.setenv("AIRFLOW_CONN_OPENTEXT_DEFAULT", connection_json(opentext_sandbox_session))
    try:
        yield opentext_sandbox_session
    finally:
        opentext_sandbox_session.clear_faults()


@pytest.fixture(params=sorted(READERS))
def read(request: pytest.FixtureRequest) -> Reader:
    return READERS[request.param]


def start_batch(sandbox: Any, regulated: bool = False) -> str:
    key = f"decisions-{uuid.uuid4().hex[:10]}"
    return sandbox.start_process(BATCH_APPROVAL, key, {"dataset": "ner_news", "regulated": regulated})["id"]


def decide(sandbox: Any, process_id: str, outcome: str, comment: str | None = "Spans look right") -> None:
    (task,) = sandbox.tasks(processInstanceId=process_id)
    sandbox.complete(task["id"], outcome, SME, comment=comment)


def test_no_decision_while_the_process_runs_undecided(sandbox: Any, read: Reader) -> None:
    process_id = start_batch(sandbox)
    assert read(process_id) is None
    assert read(process_id, task_definition_key="sme_review") is None
    assert read(process_id, decision_variable="sme_review_outcome") is None


def test_an_ended_process_carries_outcome_end_approver_and_comments(sandbox: Any, read: Reader) -> None:
    process_id = start_batch(sandbox)
    decide(sandbox, process_id, "rejected", "Relabel the sneaker brands")
    decision = read(process_id)
    assert decision["process_instance_id"] == process_id
    assert (decision["watched"], decision["ended"], decision["end_activity_id"], decision["outcome"]) == (
        "process",
        True,
        "end_rejected",
        "rejected",
    )
    assert (decision["approver"], decision["task_definition_key"]) == (SME, "sme_review")
    assert [(c["author"], c["message"]) for c in decision["comments"]] == [
        (SME, "Relabel the sneaker brands")
    ]
    assert decision["decided_at"]


def test_a_watched_task_decides_while_the_process_goes_on(sandbox: Any, read: Reader) -> None:
    process_id = start_batch(sandbox, regulated=True)
    decide(sandbox, process_id, "approved")
    assert read(process_id) is None, "the compliance review is still open"
    decision = read(process_id, task_definition_key="sme_review")
    assert (decision["watched"], decision["ended"], decision["outcome"]) == ("task", False, "approved")
    assert decision["approver"] == SME
    by_variable = read(process_id, decision_variable="sme_review_outcome")
    assert (by_variable["watched"], by_variable["ended"], by_variable["outcome"]) == (
        "variable",
        False,
        "approved",
    )


def test_a_cancelled_process_is_decided_with_its_reason(sandbox: Any, read: Reader) -> None:
    process_id = start_batch(sandbox)
    OpenTextWorkflowHook().cancel_process(process_id, "withdrawn by the data owner")
    decision = read(process_id, task_definition_key="sme_review")
    assert (decision["ended"], decision["delete_reason"]) == (True, "withdrawn by the data owner")
    assert decision["approver"] is None


def test_an_unknown_process_is_an_error(sandbox: Any, read: Reader) -> None:
    with pytest.raises(OpenTextNotFoundError, match="no-such-process"):
        read("no-such-process")


def test_comments_gone_with_a_finished_process_give_the_same_decision_on_both_hooks(sandbox: Any) -> None:
    """A service that keeps comments only while an instance runs answers 404 for a finished one's."""
    process_id = start_batch(sandbox)
    decide(sandbox, process_id, "approved")
    with_comments = {kind: reader(process_id) for kind, reader in READERS.items()}
    assert with_comments["sync"] == with_comments["async"]
    assert with_comments["sync"]["comments"]

    sandbox.set_faults(status=404, path_prefix=f"/workflow/v1/process-instances/{process_id}/comments")
    without = {kind: reader(process_id) for kind, reader in READERS.items()}
    assert without["sync"] == without["async"]
    assert without["sync"]["comments"] == []
    assert {**without["sync"], "comments": with_comments["sync"]["comments"]} == with_comments["sync"]


def test_waiting_at_a_task_is_read_with_what_the_work_needs_and_nothing_is_read_twice(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sync hook keeps what its decision read saw: the task that waits (its id, to complete it) and
    the process with its variables, so a service task's work reads neither again; a decision from
    elsewhere (a trigger's event) gets the variables read anew."""
    process_id = start_batch(sandbox, regulated=True)
    hook = OpenTextWorkflowHook()
    assert hook.read_decision(process_id, open_task_key="compliance_review") is None
    decide(sandbox, process_id, "approved")
    decision = hook.read_decision(process_id, open_task_key="compliance_review")
    assert decision is not None and (decision["watched"], decision["approver"]) == ("open_task", SME)
    (waiting,) = sandbox.tasks(processInstanceId=process_id)
    seen = hook.seen_with(decision)
    assert seen is not None
    assert [task["id"] for task in seen.open_tasks("compliance_review") or []] == [waiting["id"]]

    sent: list[str] = []
    send = OpenTextWorkflowHook._send
    monkeypatch.setattr(
        OpenTextWorkflowHook,
        "_send",
        lambda self, method, url, **kw: sent.append(url) or send(self, method, url, **kw),
    )
    process = hook.decided_process(decision)
    assert sent == [] and process["id"] == process_id
    assert {v["name"]: v["value"] for v in process["variables"]}["sme_review_outcome"] == "approved"

    from_elsewhere = Decision(**decision)  # equal, but not the one this hook read
    assert hook.seen_with(from_elsewhere) is None
    assert hook.decided_process(from_elsewhere)["id"] == process_id
    assert [url.rsplit("/workflow/v1", 1)[-1] for url in sent] == ["/historic-process-instances"]
