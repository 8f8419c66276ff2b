"""What counts as an approval: the one rule, and the release check built on it."""

from __future__ import annotations

import re

import pytest

from prodigy_opentext.core.approvals import (
    Step,
    annotator_identities,
    check_approval,
    deciders,
    duplicate_start_reason,
    is_approved,
    judged,
    required_steps,
    step_problems,
)
from prodigy_opentext.core.payloads import Decision
from prodigy_opentext.exceptions import ApprovalRefused, DatasetNotGovernable

KEY = "annotation_batch_approval:news:b42"


def decision(pid="p2", end="end_approved", **extra) -> Decision:
    fields = {
        "process_instance_id": pid,
        "watched": "process",
        "business_key": KEY,
        "outcome": "approved",
        "ended": True,
        "end_activity_id": end,
        "delete_reason": None,
        "task_definition_key": "sme_review",
        "task_id": "t1",
        "approver": "sme@example.com",
        "decided_at": "2026-11-27T10:00:00.000+0000",
        "comments": [{"author": "sme@example.com", "message": "looks good", "time": "t"}],
        **extra,
    }
    return Decision(**fields)


INSTANCES = [
    {"id": "p1", "startTime": "2026-11-26T09:00:00.000+0000"},
    {"id": "p2", "startTime": "2026-11-27T09:00:00.000+0000"},
]


@pytest.mark.parametrize(
    ("facts", "approved"),
    [
        ({}, True),
        ({"end": "end_passed", "outcome": "pass"}, True),
        ({"end": "end_rejected", "outcome": "rejected"}, False),
        # an outcome variable cannot overrule where the model ended
        ({"end": "end_rejected", "outcome": "approved"}, False),
        ({"end": "end_approved", "outcome": None}, True),
        ({"delete_reason": "withdrawn by owner"}, False),
        # ended, but OpenText names no end event: nothing says the model approved
        ({"end": None, "outcome": "approved"}, False),
        ({"ended": False, "end": None, "outcome": "approved"}, False),
        # a wait for one task: its outcome decides, however the process goes on
        ({"watched": "task", "ended": False, "end": None, "outcome": "approved"}, True),
        ({"watched": "task", "end": "end_rejected", "outcome": "approved"}, True),
        ({"watched": "task", "ended": False, "end": None, "outcome": "pass"}, True),
        ({"watched": "variable", "ended": False, "end": None, "outcome": "rework"}, False),
        ({"watched": "task", "ended": False, "end": None, "outcome": None}, False),
        ({"watched": "task", "delete_reason": "withdrawn by owner"}, False),
    ],
)
def test_one_rule_decides_what_approves(facts, approved):
    assert is_approved(decision(**facts)) is approved
    assert judged(decision(**facts))["approved"] is approved


def test_the_rule_takes_a_models_own_outcomes_and_end_events():
    assert is_approved(decision(end="done"), end_activities=("done",))
    assert not is_approved(decision(end="done"))
    running = decision(watched="task", ended=False, end=None, outcome="ok")
    assert is_approved(running, outcomes=("ok",)) and not is_approved(running)


@pytest.mark.parametrize("end", ["end_passed", "end_rejected", "end_rework", "end_denied"])
def test_the_release_check_accepts_only_an_approval_models_approved_end(end):
    assert check_approval("batch_approval", KEY, INSTANCES, decision(), {})["process_instance_id"] == "p2"
    with pytest.raises(ApprovalRefused, match=end):
        check_approval("batch_approval", KEY, INSTANCES, decision(end=end), {})


def test_the_release_check_needs_the_process_end_not_one_task():
    task_only = decision(watched="task")
    assert is_approved(task_only)
    with pytest.raises(ApprovalRefused, match="whole process"):
        check_approval("batch_approval", KEY, INSTANCES, task_only, {})


def test_latest_approved_instance_is_accepted_with_approver_and_comments():
    record = check_approval("batch_approval", KEY, INSTANCES, decision(), {})
    assert record["approver"] == "sme@example.com"
    assert record["process_instance_id"] == "p2"
    assert record["comments"][0]["message"] == "looks good"


def test_missing_process_is_refused():
    with pytest.raises(ApprovalRefused, match="no OpenText process"):
        check_approval("release_signoff", KEY, [], None, {})


def test_rejection_is_refused():
    with pytest.raises(ApprovalRefused, match="end_rejected"):
        check_approval("batch_approval", KEY, INSTANCES, decision(end="end_rejected"), {})


def test_cancelled_process_is_refused():
    with pytest.raises(ApprovalRefused, match="cancelled"):
        check_approval("batch_approval", KEY, INSTANCES, decision(delete_reason="withdrawn by owner"), {})


def test_a_process_still_running_is_no_approval_yet():
    running = decision(ended=False, end=None)
    with pytest.raises(ApprovalRefused, match="no decision yet"):
        check_approval("batch_approval", KEY, INSTANCES, running, {})


def test_a_later_open_instance_revokes_an_earlier_approval():
    reopened = [*INSTANCES, {"id": "p3", "startTime": "2026-11-28T09:00:00.000+0000"}]
    with pytest.raises(ApprovalRefused, match="p3"):
        check_approval("batch_approval", KEY, reopened, decision(pid="p2"), {})


GROUP_OF = {"sme_review": "annotation-sme", "compliance_review": "compliance-officers"}
MEMBERS = {
    "sme@x.com": ["annotation-sme"],
    "co@x.com": ["compliance-officers"],
    "both@x.com": list(GROUP_OF.values()),
}


def done(task: str, outcome: str | None, user: str | None, **extra) -> dict:
    """A historic task as OpenText lists it, offered to the group the model gives it."""
    return {
        "taskDefinitionKey": task,
        "outcome": outcome,
        "assignee": user,
        "candidateGroups": [GROUP_OF.get(task, "reviewers")],
        "endTime": "2026-11-27T10:00:00.000+0000",
        **extra,
    }


REGULATED_STEPS = required_steps("annotation_batch_approval", regulated=True)
SME_STEP = Step("sme_review", "approved", "annotation-sme")
COMPLIANCE_STEP = Step("compliance_review", "approved", "compliance-officers")


def test_the_policy_names_the_steps_regulated_data_needs_too():
    assert required_steps("annotation_batch_approval", regulated=False) == [SME_STEP]
    assert [SME_STEP, COMPLIANCE_STEP] == REGULATED_STEPS
    signoff = Step("release_signoff", "approved", "release-managers")
    assert required_steps("dataset_release_signoff", regulated=True) == [signoff]
    with pytest.raises(ValueError, match="no usable policy for 'qa_review'"):
        required_steps("qa_review", regulated=False)


@pytest.mark.parametrize(
    ("history", "problem"),
    [
        ([done("sme_review", "approved", "sme@x.com")], "no completed 'compliance_review' task"),
        (
            [done("sme_review", "approved", "sme@x.com"), done("compliance_review", "rejected", "co@x.com")],
            "'compliance_review' ended with outcome 'rejected'",
        ),
        (
            [
                done("sme_review", "approved", "both@x.com"),
                done("compliance_review", "approved", "both@x.com"),
            ],
            "both@x.com decided both 'sme_review' and 'compliance_review': nobody approves twice",
        ),
        (
            [
                done("sme_review", "approved", "sme@x.com"),
                done("compliance_review", "approved", "outsider@x.com"),
            ],
            "outsider@x.com decided 'compliance_review' but is not a member of 'compliance-officers'",
        ),
        (
            [
                done("sme_review", "approved", "sme@x.com", candidateGroups=["everyone"]),
                done("compliance_review", "approved", "co@x.com"),
            ],
            "'sme_review' was offered to ['everyone'], not to the group 'annotation-sme'",
        ),
        (
            [
                done("sme_review", "approved", "annotator@x.com"),
                done("compliance_review", "approved", "co@x.com"),
            ],
            "annotator@x.com decided 'sme_review' but annotated this batch",
        ),
        (
            [done("sme_review", "approved", None), done("compliance_review", "approved", "co@x.com")],
            "'sme_review' names no user who decided it",
        ),
        (
            [
                done("sme_review", "approved", "sme@x.com"),
                done("compliance_review", "approved", "co@x.com", deleteReason="boundary event (timer)"),
            ],
            "no completed 'compliance_review' task",
        ),
    ],
)
def test_only_the_task_history_makes_a_step_count(history, problem):
    """Process variables such as compliance_review_outcome count for nothing: whoever completes a task can
    set them. Before, a regulated batch whose SME set compliance_review_outcome=approved was released."""
    forged = {"compliance_review_outcome": "approved", "regulated": False}
    members = {**MEMBERS, "annotator@x.com": ["annotation-sme"], "outsider@x.com": []}
    with pytest.raises(ApprovalRefused, match=re.escape(problem)):
        check_approval(
            "batch_approval",
            KEY,
            INSTANCES,
            decision(),
            forged,
            steps=REGULATED_STEPS,
            history=history,
            memberships=members,
            annotators=["annotator@x.com"],
        )


def test_every_step_in_the_history_approves():
    history = [done("sme_review", "approved", "sme@x.com"), done("compliance_review", "approved", "co@x.com")]
    assert deciders(history) == ["co@x.com", "sme@x.com"]
    record = check_approval(
        "batch_approval",
        KEY,
        INSTANCES,
        decision(),
        {},
        steps=REGULATED_STEPS,
        history=history,
        memberships=MEMBERS,
        annotators=["annotator@x.com"],
    )
    assert record["process_instance_id"] == "p2"


def test_annotators_are_named_by_the_dataset_meta_or_refused():
    meta = {"annotator_emails": {"alice": "alice@x.com", "news-bob": "bob@x.com"}}
    sessions = ["news-alice", "news-bob", "carol@x.com"]
    assert annotator_identities("news", sessions, meta) == ["alice@x.com", "bob@x.com", "carol@x.com"]
    with pytest.raises(
        DatasetNotGovernable, match=r"session\(s\) dave name no OpenText user.*annotator_emails"
    ):
        annotator_identities("news", ["news-alice", "news-dave"], meta)
    assert annotator_identities("news", [], {}) == []


def test_approval_holds_only_for_the_data_the_reviewers_saw():
    reviewed = {"answers_sha256": "abc"}
    assert check_approval("batch_approval", KEY, INSTANCES, decision(), reviewed, reviewed_sha256="abc")
    with pytest.raises(ApprovalRefused, match="changed after the review"):
        check_approval("batch_approval", KEY, INSTANCES, decision(), reviewed, reviewed_sha256="def")


def test_a_duplicate_cancelled_after_a_start_race_does_not_stand_for_the_key():
    """Before: the race's cancelled duplicate, started last, stood and revoked the approval."""
    duplicate = {
        "id": "p3",
        "startTime": "2026-11-28T09:00:00.000+0000",
        "deleteReason": duplicate_start_reason(KEY, "p2"),
    }
    assert check_approval("batch_approval", KEY, [*INSTANCES, duplicate], decision(pid="p2"), {})


def test_a_session_named_by_an_email_is_that_person_whatever_the_case():
    """Before: Prodigy's ``<dataset>-alice@x.com`` session was taken for the person ``news-alice@x.com``,
    so Alice could approve what she annotated."""
    assert annotator_identities("news", ["news-Alice@X.com"], {}) == ["alice@x.com"]
    history = [done("sme_review", "approved", "ALICE@x.com")]
    problems = step_problems(
        [SME_STEP], history, memberships={"ALICE@x.com": ["annotation-sme"]}, annotators=["alice@x.com"]
    )
    assert problems == ["ALICE@x.com decided 'sme_review' but annotated this batch"]


def test_a_delete_reason_alone_does_not_make_an_instance_a_duplicate():
    """A revoking later instance cancelled with a forged duplicate reason still stands."""
    forged = {
        "id": "p3",
        "startTime": "2026-11-28T09:00:00.000+0000",
        "deleteReason": duplicate_start_reason(KEY, "no-such-process"),
    }
    with pytest.raises(ApprovalRefused, match="p3"):
        check_approval("batch_approval", KEY, [*INSTANCES, forged], decision(pid="p2"), {})
