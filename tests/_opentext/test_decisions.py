"""The decision probe on canned answers (the same reads against the sandbox, through both hooks, are in
``tests/hooks/test_opentext_decisions.py``)."""

from __future__ import annotations

import pytest

from prodigy_opentext._opentext.decisions import TASK_PAGE, ProbeSeen, decision_probe
from prodigy_opentext.exceptions import OpenTextNotFoundError


def run_probe(answers: dict[str, object], **watch: str) -> dict | None:
    """Drive the decision probe with canned answers keyed by path."""
    probe = decision_probe("p1", **watch)
    reply = None
    try:
        while True:
            call = probe.send(reply)
            reply = answers[call.path]
    except StopIteration as done:
        return done.value


def hal(*items: dict) -> dict:
    return {"_embedded": {"items": list(items)}, "page": {"totalElements": len(items)}}


RUNNING = hal({"id": "p1", "businessKey": "b", "endTime": None, "variables": []})
APPROVED_TASK = {
    "id": "t1",
    "taskDefinitionKey": "sme_review",
    "assignee": "sme@x.com",
    "endTime": "2024-05-01T10:00:00.000+0000",
}
COMMENTS = [{"author": "sme@x.com", "message": "fine", "time": "2024-05-01T09:59:00.000+0000"}]


def test_probe_waits_while_the_instance_runs_undecided() -> None:
    answers = {"/historic-process-instances": RUNNING, "/historic-task-instances": hal()}
    assert run_probe(answers) is None
    assert run_probe(answers, task_definition_key="sme_review") is None
    assert run_probe(answers, decision_variable="verdict") is None


def test_probe_reads_a_completed_task_with_its_outcome_approver_and_comments() -> None:
    outcome = {"name": "sme_review_outcome", "type": "string", "value": "approved"}
    process = hal({"id": "p1", "businessKey": "b", "variables": [outcome]})
    answers = {
        "/historic-process-instances": process,
        "/historic-task-instances": hal(APPROVED_TASK),
        "/process-instances/p1/comments": COMMENTS,
    }
    decision = run_probe(answers, task_definition_key="sme_review")
    assert decision is not None
    assert (decision["outcome"], decision["approver"], decision["ended"]) == ("approved", "sme@x.com", False)
    assert decision["comments"] == COMMENTS
    assert decision["decided_at"] == APPROVED_TASK["endTime"]


def test_probe_decides_when_the_instance_ended_first() -> None:
    outcome = {"name": "outcome", "type": "string", "value": "rejected"}
    ended = hal(
        {
            "id": "p1",
            "endTime": "2024-05-02T00:00:00.000+0000",
            "endActivityId": "end_rejected",
            "variables": [outcome],
        }
    )
    answers = {
        "/historic-process-instances": ended,
        "/historic-task-instances": hal(),
        "/process-instances/p1/comments": [],
    }
    decision = run_probe(answers, task_definition_key="compliance_review")
    assert decision is not None
    assert (decision["end_activity_id"], decision["outcome"], decision["approver"]) == (
        "end_rejected",
        None,
        None,
    )
    assert run_probe(answers)["outcome"] == "rejected"


def test_probe_reports_an_unknown_instance() -> None:
    with pytest.raises(OpenTextNotFoundError, match="p1"):
        run_probe({"/historic-process-instances": hal()})


REVIEW_DONE = {
    "id": "t1",
    "taskDefinitionKey": "senior_review",
    "assignee": "senior@x.com",
    "startTime": "2024-05-01T09:00:00.000+0000",
    "endTime": "2024-05-01T10:00:00.000+0000",
}
CHECK_OPEN = {
    "id": "t2",
    "taskDefinitionKey": "check_decisions",
    "startTime": "2024-05-01T10:00:00.000+0000",
    "endTime": None,
}


def test_probe_reads_waiting_at_a_task_and_who_decided_from_one_read_of_the_task_history() -> None:
    """Open tasks are in the history beside finished ones (no endTime): one read says both that the process
    waits at Airflow's task and who decided last; what it read is kept for the caller."""
    earlier = {
        **REVIEW_DONE,
        "id": "t0",
        "assignee": "first@x.com",
        "endTime": "2024-05-01T09:30:00.000+0200",
    }
    calls = []
    probe_seen = ProbeSeen()
    probe = decision_probe("p1", open_task_key="check_decisions", seen=probe_seen)
    answers = {
        "/historic-process-instances": RUNNING,
        "/historic-task-instances": hal(earlier, REVIEW_DONE, CHECK_OPEN),
        "/process-instances/p1/comments": COMMENTS,
    }
    reply = None
    try:
        while True:
            call = probe.send(reply)
            calls.append(call.path)
            reply = answers[call.path]
    except StopIteration as done:
        decision = done.value
    assert calls == [
        "/historic-process-instances",
        "/historic-task-instances",
        "/process-instances/p1/comments",
    ]
    assert decision is not None and decision["watched"] == "open_task"
    assert (decision["approver"], decision["task_id"]) == ("senior@x.com", "t1"), (
        "the latest end, by its offset"
    )
    assert probe_seen.process == RUNNING["_embedded"]["items"][0]
    assert [task["id"] for task in probe_seen.open_tasks("check_decisions") or []] == ["t2"]
    assert probe_seen.open_tasks("senior_review") == []


def test_probe_waits_while_airflows_task_is_not_open_and_pages_through_a_long_history() -> None:
    loops = [{**REVIEW_DONE, "id": f"t{n}"} for n in range(TASK_PAGE + 5)]
    pages = {
        0: {"_embedded": {"items": loops[:TASK_PAGE]}, "page": {"totalElements": len(loops) + 1}},
        TASK_PAGE: {
            "_embedded": {"items": [*loops[TASK_PAGE:], CHECK_OPEN]},
            "page": {"totalElements": len(loops) + 1},
        },
    }

    def drive(task_pages: dict[int, dict]) -> dict | None:
        probe = decision_probe("p1", open_task_key="check_decisions")
        reply = None
        try:
            while True:
                call = probe.send(reply)
                if call.path == "/historic-task-instances":
                    reply = task_pages[(call.params or {})["offset"]]
                else:
                    reply = {"/historic-process-instances": RUNNING}.get(call.path, COMMENTS)
        except StopIteration as done:
            return done.value

    assert drive(pages) is not None, "the open task on the second page counts"
    assert drive({0: hal(REVIEW_DONE)}) is None, "the process is not at check_decisions yet"
