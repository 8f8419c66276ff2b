"""The decision probe on canned answers (the same reads against the sandbox, through both hooks, are in
``tests/hooks/test_opentext_decisions.py``)."""

from __future__ import annotations

import pytest

from prodigy_opentext._opentext.decisions import decision_probe
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
