"""Deterministic, stratified QA samples."""

from __future__ import annotations

import random

import pytest

from prodigy_opentext.core.sampling import qa_sample


def batch() -> list[dict]:
    """600 textcat answers: labels 50/30/20 %, two annotators 2:1."""
    tasks = []
    for i in range(600):
        label = "BUG" if i % 10 < 5 else "DOCS" if i % 10 < 8 else "FEATURE"
        annotator = "issues-ann" if i % 3 else "issues-bob"
        tasks.append(
            {
                "text": f"issue {i}",
                "label": label,
                "answer": "accept",
                "_input_hash": i,
                "_task_hash": 10_000 + i,
                "_annotator_id": annotator,
            }
        )
    return tasks


def hashes(sample) -> list[int]:
    return [task["_task_hash"] for task in sample.tasks]


def test_same_seed_same_sample_whatever_the_order() -> None:
    tasks = batch()
    shuffled = tasks[:]
    random.Random(4).shuffle(shuffled)
    first = qa_sample(tasks, seed="qa-round-1", size=60)
    assert sorted(hashes(first)) == sorted(hashes(qa_sample(shuffled, seed="qa-round-1", size=60)))
    assert hashes(first) == sorted(hashes(first))  # kept in batch order
    assert set(hashes(first)) != set(hashes(qa_sample(tasks, seed="qa-round-2", size=60)))


def test_strata_get_their_proportional_share() -> None:
    sample = qa_sample(batch(), seed=7, size=60)
    assert len(sample.tasks) == 60
    assert sample.strata["BUG|issues-ann"] == {"population": 200, "sampled": 20}
    assert sample.strata["BUG|issues-bob"] == {"population": 100, "sampled": 10}
    assert sample.strata["FEATURE|issues-bob"] == {"population": 40, "sampled": 4}
    by_label = {}
    for task in sample.tasks:
        by_label[task["label"]] = by_label.get(task["label"], 0) + 1
    assert by_label == {"BUG": 30, "DOCS": 18, "FEATURE": 12}


def test_largest_remainder_keeps_the_exact_size() -> None:
    sample = qa_sample(batch(), seed=7, size=7)
    assert len(sample.tasks) == 7
    assert sum(s["sampled"] for s in sample.strata.values()) == 7


def test_fraction_rounds_up_and_size_is_capped_by_the_batch() -> None:
    assert len(qa_sample(batch(), seed=1, fraction=0.001).tasks) == 1
    assert len(qa_sample(batch()[:5], seed=1, size=50).tasks) == 5
    assert qa_sample([], seed=1, fraction=0.5).tasks == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "exactly one"),
        ({"size": 3, "fraction": 0.1}, "exactly one"),
        ({"size": -1}, "size"),
        ({"fraction": 1.5}, "fraction"),
    ],
)
def test_bad_sample_sizes_are_refused(options, message) -> None:
    with pytest.raises(ValueError, match=message):
        qa_sample(batch(), seed=1, **options)
