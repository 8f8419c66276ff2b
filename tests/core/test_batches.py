"""Batches: their version, the businessKey of their processes, and which datasets are ready for review."""

from __future__ import annotations

import pytest

from prodigy_opentext.core.batches import (
    Batch,
    approved_version,
    business_key,
    datasets_ready_for_review,
    version_last_example_id,
)

KEY = "annotation_batch_approval:news:b42"


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


def test_a_requested_review_that_was_never_recorded_comes_back():
    datasets = [{"name": "a", "meta": {"review": {"status": "requested"}}}]
    assert datasets_ready_for_review(datasets) == ["a"]


@pytest.mark.parametrize(
    ("review", "expected"),
    [
        ({"status": "approved", "version": "b12"}, "b12"),
        ({"status": "rework", "version": "b15"}, None),
        ({"status": "requested", "version": "b15"}, None),
        ({"status": "ready"}, None),
        (None, None),
    ],
)
def test_the_approved_version_is_the_latest_review_when_it_approved(review, expected):
    meta = {"labels": ["ORG"]} | ({"review": review} if review else {})
    assert approved_version(meta) == expected
