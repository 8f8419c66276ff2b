"""Governance rules: batch identity, which datasets are ready, and what counts as an approval."""

from __future__ import annotations

import pytest

from prodigy_opentext.governance import (
    ApprovalRefused,
    Batch,
    business_key,
    check_approval,
    datasets_ready_for_review,
    version_last_example_id,
)

KEY = "annotation_batch_approval:news:b42"


def decision(pid="p2", end="end_approved", **extra):
    return {
        "process_instance_id": pid,
        "business_key": KEY,
        "outcome": "approved",
        "end_activity_id": end,
        "delete_reason": None,
        "approver": "sme@example.com",
        "decided_at": "2026-11-27T10:00:00.000+0000",
        "comments": [{"author": "sme@example.com", "message": "looks good", "time": "t"}],
        **extra,
    }


INSTANCES = [
    {"id": "p1", "startTime": "2026-11-26T09:00:00.000+0000"},
    {"id": "p2", "startTime": "2026-11-27T09:00:00.000+0000"},
]


def test_batch_version_round_trips_and_names_the_business_key():
    batch = Batch("news", 42)
    assert batch.version == "b42"
    assert version_last_example_id(batch.version) == 42
    assert (
        batch.business_key("annotation_batch_approval")
        == KEY
        == business_key("annotation_batch_approval", "news", "b42")
    )


@pytest.mark.parametrize("bad", ["42", "b", "bx1", "v42", "b-1"])
def test_malformed_version_is_named(bad):
    with pytest.raises(ValueError, match=repr(bad)):
        version_last_example_id(bad)


def test_ready_datasets_come_from_meta_and_skip_sessions():
    datasets = [
        {"name": "a", "meta": {"review": {"status": "ready"}}},
        {"name": "b", "meta": {"review": {"status": "approved"}}},
        {"name": "c", "meta": {}},
        {"name": "a-alice", "session": True, "meta": {"review": {"status": "ready"}}},
        {"name": "d", "meta": {"review": {"status": "ready"}}},
    ]
    assert datasets_ready_for_review(datasets) == ["a", "d"]
    assert datasets_ready_for_review(datasets, only="d") == ["d"]
    assert datasets_ready_for_review(datasets, only="b") == []


def test_latest_approved_instance_is_accepted_with_approver_and_comments():
    record = check_approval("batch_approval", KEY, INSTANCES, decision())
    assert record["approver"] == "sme@example.com"
    assert record["process_instance_id"] == "p2"
    assert record["comments"][0]["message"] == "looks good"


def test_missing_process_is_refused():
    with pytest.raises(ApprovalRefused, match="no OpenText process"):
        check_approval("release_signoff", KEY, [], None)


def test_rejection_is_refused():
    with pytest.raises(ApprovalRefused, match="end_rejected"):
        check_approval("batch_approval", KEY, INSTANCES, decision(end="end_rejected"))


def test_cancelled_process_is_refused():
    with pytest.raises(ApprovalRefused, match="cancelled"):
        check_approval("batch_approval", KEY, INSTANCES, decision(delete_reason="withdrawn by owner"))


def test_a_later_open_instance_revokes_an_earlier_approval():
    reopened = [*INSTANCES, {"id": "p3", "startTime": "2026-11-28T09:00:00.000+0000"}]
    with pytest.raises(ApprovalRefused, match="p3"):
        check_approval("batch_approval", KEY, reopened, decision(pid="p2"))


def with_variables(**variables):
    latest = {**INSTANCES[1], "variables": [{"name": k, "value": v} for k, v in variables.items()]}
    return [INSTANCES[0], latest]


def test_regulated_data_needs_an_approved_compliance_review():
    approved = with_variables(compliance_review_outcome="approved")
    assert check_approval("batch_approval", KEY, approved, decision(), regulated=True)
    with pytest.raises(ApprovalRefused, match="regulated"):
        check_approval("batch_approval", KEY, INSTANCES, decision(), regulated=True)
    rejected = with_variables(compliance_review_outcome="rejected")
    with pytest.raises(ApprovalRefused, match="compliance_review"):
        check_approval("batch_approval", KEY, rejected, decision(), regulated=True)


def test_approval_holds_only_for_the_data_the_reviewers_saw():
    reviewed = with_variables(answers_sha256="abc")
    assert check_approval("batch_approval", KEY, reviewed, decision(), reviewed_sha256="abc")
    with pytest.raises(ApprovalRefused, match="changed after the review"):
        check_approval("batch_approval", KEY, reviewed, decision(), reviewed_sha256="def")


def test_a_requested_review_that_was_never_recorded_comes_back():
    datasets = [{"name": "a", "meta": {"review": {"status": "requested"}}}]
    assert datasets_ready_for_review(datasets) == ["a"]
