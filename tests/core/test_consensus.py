"""Merging annotators' answers into final examples and disputes."""

from __future__ import annotations

import json
import random

import pytest

from prodigy_opentext.core.agreement import item_key
from prodigy_opentext.core.consensus import (
    CONFLICT,
    FLAGGED,
    IGNORED,
    LOW_SCORE,
    ConsensusError,
    build_consensus,
    final_line,
    item_groups,
    merge_fields,
    merge_item,
)
from tests.fixtures.samples import SAMPLE_FILES

BRAND = {"start": 0, "end": 4, "label": "BRAND"}
CITY = {"start": 20, "end": 26, "label": "CITY"}


def answer(input_hash: int, annotator: str, spans: list[dict], **fields) -> dict:
    task = {
        "text": "Acme makes shoes in Berlin",
        "_input_hash": input_hash,
        "_task_hash": input_hash * 100,
        "_annotator_id": f"ner_fashion-{annotator}",
        "_timestamp": 1_700_000_000,
        "answer": "accept",
        "spans": spans,
    }
    return {**task, **fields}


def test_unanimous_items_become_one_final_example_each() -> None:
    result = build_consensus(
        [answer(1, "ann", [BRAND, CITY]), answer(1, "bob", [CITY, BRAND]), answer(2, "ann", [])]
    )
    assert result.disputes == []
    assert [task["_input_hash"] for task in result.merged] == [1, 2]
    first = result.merged[0]
    assert first["_consensus"] == {
        "method": "unanimous",
        "annotators": ["ner_fashion-ann", "ner_fashion-bob"],
    }
    assert first["spans"] == [BRAND, CITY]
    assert result.counts() == {"merged": 2, "disputes": 0, "resolved": 0}


@pytest.mark.parametrize(
    ("versions", "reasons"),
    [
        ([answer(1, "ann", [BRAND]), answer(1, "bob", [CITY])], [CONFLICT]),
        ([answer(1, "ann", [BRAND]), answer(1, "bob", [BRAND], answer="reject")], [CONFLICT]),
        ([answer(1, "ann", [BRAND]), answer(1, "bob", [], answer="ignore")], [IGNORED]),
        ([answer(1, "ann", [BRAND]), answer(1, "bob", [BRAND], flagged=True)], [FLAGGED]),
        (
            [answer(1, "ann", [BRAND], meta={"score": 0.2}), answer(1, "bob", [BRAND], meta={"score": 0.2})],
            [LOW_SCORE],
        ),
        ([answer(1, "ann", [BRAND]), answer(1, "bob", [CITY], flagged=True)], [CONFLICT, FLAGGED]),
    ],
)
def test_items_needing_a_reviewer_become_disputes_with_every_version(versions, reasons) -> None:
    result = build_consensus(versions, min_score=0.5)
    assert result.merged == []
    (dispute,) = result.disputes
    assert dispute.reasons == reasons
    as_dict = dispute.as_dict()
    assert as_dict["input_hash"] == 1
    assert as_dict["annotators"] == ["ner_fashion-ann", "ner_fashion-bob"]
    assert [version["spans"] for version in as_dict["versions"]] == [v["spans"] for v in versions]


def test_scores_at_or_above_the_threshold_and_no_threshold_are_not_disputed() -> None:
    versions = [answer(1, "ann", [BRAND], meta={"score": 0.5}), answer(1, "bob", [BRAND])]
    assert len(build_consensus(versions, min_score=0.5).merged) == 1
    assert len(build_consensus([answer(1, "ann", [BRAND], meta={"score": 0.01})]).merged) == 1


def test_adjudicated_versions_resolve_disputes() -> None:
    conflict = [answer(1, "ann", [BRAND]), answer(1, "bob", [CITY])]
    in_stream = build_consensus([*conflict, answer(1, "lead", [BRAND, CITY], _adjudicated=True)])
    from_dataset = build_consensus(conflict, adjudications=[answer(1, "lead", [BRAND, CITY])])
    for result in (in_stream, from_dataset):
        assert result.disputes == []
        (final,) = result.merged
        assert final["spans"] == [BRAND, CITY]
        assert final["_annotator_id"] == "ner_fashion-lead"
        assert final["_consensus"]["method"] == "adjudicated"
        assert final["_consensus"]["annotators"] == ["ner_fashion-ann", "ner_fashion-bob"]
        assert result.resolved == 1


def test_an_adjudication_for_an_item_not_in_the_stream_is_still_final() -> None:
    result = build_consensus([answer(1, "ann", [])], adjudications=[answer(2, "lead", [CITY])])
    assert sorted(task["_input_hash"] for task in result.merged) == [1, 2]
    assert result.resolved == 0


def test_an_annotators_latest_answer_replaces_their_earlier_one() -> None:
    result = build_consensus(
        [
            answer(1, "ann", [CITY], _timestamp=100),
            answer(1, "bob", [BRAND], _timestamp=150),
            answer(1, "ann", [BRAND], _timestamp=200),
        ]
    )
    assert result.disputes == []
    assert result.merged[0]["_consensus"]["annotators"] == ["ner_fashion-bob", "ner_fashion-ann"]


def test_binary_questions_about_one_input_are_merged_separately() -> None:
    tasks = [
        {
            "text": "t",
            "_input_hash": 7,
            "_task_hash": 71,
            "label": "SPAM",
            "answer": "accept",
            "_annotator_id": "a",
        },
        {
            "text": "t",
            "_input_hash": 7,
            "_task_hash": 71,
            "label": "SPAM",
            "answer": "accept",
            "_annotator_id": "b",
        },
        {
            "text": "t",
            "_input_hash": 7,
            "_task_hash": 72,
            "label": "HAM",
            "answer": "reject",
            "_annotator_id": "a",
        },
        {
            "text": "t",
            "_input_hash": 7,
            "_task_hash": 72,
            "label": "HAM",
            "answer": "accept",
            "_annotator_id": "b",
        },
    ]
    result = build_consensus(tasks)
    assert [task["label"] for task in result.merged] == ["SPAM"]
    assert [(d.input_hash, d.label, d.reasons) for d in result.disputes] == [(7, "HAM", [CONFLICT])]


def test_two_items_ending_in_the_same_task_hash_are_refused() -> None:
    with pytest.raises(ConsensusError, match="task_hash 500 is the final example of two items"):
        build_consensus([answer(1, "ann", [], _task_hash=500), answer(2, "ann", [], _task_hash=500)])


def three_annotators(tasks: list[dict]) -> list[dict]:
    """Every task answered by three annotators who sometimes disagree, ignore or flag, in a shuffled order."""
    answers = []
    for n, task in enumerate(tasks):
        for k, name in enumerate(("ann", "bob", "cyd")):
            version = {**task, "_annotator_id": f"ds-{name}", "_timestamp": 1_700_000_000 + 3 * n + k}
            if name == "bob" and n % 5 == 0 and version.get("spans"):
                version["spans"] = version["spans"][:-1]
            if name == "cyd" and n % 7 == 0:
                version["answer"] = "reject"
            if name == "cyd" and n % 11 == 0:
                version["answer"] = "ignore"
            if name == "ann" and n % 13 == 0:
                version["flagged"] = True
            answers.append(version)
    random.Random(14).shuffle(answers)
    return answers


def by_item(result) -> tuple[list, list, int]:
    finals = sorted(result.merged, key=lambda task: repr(item_key(task)))
    disputes = sorted(
        (d.as_dict() for d in result.disputes), key=lambda d: repr((d["input_hash"], d["label"]))
    )
    return finals, disputes, result.resolved


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_a_stream_in_input_hash_order_merges_as_the_whole_batch_does(prodigy_samples_dir, name) -> None:
    tasks = [json.loads(line) for line in (prodigy_samples_dir / name).read_text().splitlines()]
    for sample in (tasks, three_annotators(tasks)):
        adjudications = [{**task, "answer": "accept", "_annotator_id": "ds-senior"} for task in sample[::17]]
        whole = build_consensus(sample, adjudications=adjudications, min_score=0.5)
        in_order = sorted(sample, key=lambda task: task["_input_hash"])
        streamed = build_consensus(iter(in_order), adjudications=adjudications, min_score=0.5)
        assert by_item(streamed) == by_item(whole)
    assert whole.disputes and whole.merged and whole.resolved, "the shuffled batch has every outcome"


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_answers_decoded_into_their_merge_fields_merge_as_whole_answers_do(prodigy_samples_dir, name) -> None:
    tasks = [json.loads(line) for line in (prodigy_samples_dir / name).read_text().splitlines()]
    whole_answers = [json.loads(json.dumps(task)) for task in three_annotators(tasks)]
    kinds = set()
    for key, versions in item_groups(whole_answers):
        encoded = [json.dumps(task).encode() for task in versions]
        fields = [merge_fields(line) for line in encoded]
        assert all(f is not None and "tokens" not in f for f in fields)
        whole, light = merge_item(key, versions, min_score=0.5), merge_item(key, fields, min_score=0.5)
        assert (whole.dispute is None) == (light.dispute is None)
        if whole.dispute is not None:
            assert light.dispute is not None and light.dispute.reasons == whole.dispute.reasons
            kinds.add("dispute")
            continue
        assert whole.final is not None and light.final is not None and light.source is not None
        source = next(i for i, task in enumerate(fields) if task is light.source)
        assert versions[source] is whole.source
        spliced = final_line(encoded[source], light.final)
        assert json.loads(spliced) == whole.final
        assert list(json.loads(spliced)) == list(whole.final), "the stored key order, _consensus last"
        kinds.add("final")
    assert kinds == {"dispute", "final"}


def test_a_final_line_is_its_answers_line_with_its_consensus_added_last() -> None:
    consensus = {"_consensus": {"method": "unanimous", "annotators": ["ann"]}}
    for line in (b'{"text": "a", "_input_hash": 1}  ', b'{"_input_hash":1,"tokens":[{"a":1}]}', b"{ }"):
        assert json.loads(final_line(line, consensus)) == {**json.loads(line), **consensus}
    assert merge_fields(b'{"_input_hash": 1, "score": NaN}') is None
    with pytest.raises(ConsensusError, match="not a JSON object line"):
        final_line(b"[1, 2]", consensus)
