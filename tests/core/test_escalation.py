"""Cases from unsettled items, and reviewers' decisions checked and turned into adjudicated examples."""

from __future__ import annotations

import json

import pytest

from prodigy_opentext.core.consensus import build_consensus
from prodigy_opentext.core.escalation import (
    adjudicated_example,
    adjudication_dataset,
    case_items,
    cases_of,
    parse_decisions,
    reviewer_view,
)
from prodigy_opentext.exceptions import AdjudicationInvalid


def answer(input_hash: int, who: str, answer: str, **extra) -> dict:
    session = f"news-{who}"
    return {
        "text": f"text {input_hash}",
        "label": "ORG",
        "_input_hash": input_hash,
        "_task_hash": input_hash * 10,
        "answer": answer,
        "_annotator_id": session,
        "_session_id": session,
        **extra,
    }


ANSWERS = [
    answer(1, "alice", "accept"),
    answer(1, "bob", "accept"),
    answer(2, "alice", "accept"),
    answer(2, "bob", "reject"),
    answer(2, "carol", "reject"),
    answer(3, "alice", "accept"),
    answer(3, "bob", "ignore"),
    answer(4, "alice", "accept", flagged=True),
    answer(4, "bob", "accept"),
]


def disputes():
    return build_consensus(ANSWERS).disputes


def test_cases_hold_the_unsettled_items_with_their_versions_most_given_first():
    items = case_items(disputes())
    assert [(i["input_hash"], i["reasons"]) for i in items] == [
        (2, ["conflict"]),
        (3, ["ignored"]),
        (4, ["flagged"]),
    ]
    two = items[0]
    assert [(v["version"], v["answer"], v["sessions"]) for v in two["versions"]] == [
        ("v1", "reject", ["news-bob", "news-carol"]),
        ("v2", "accept", ["news-alice"]),
    ]
    assert two["agreement"] == round(2 / 3, 3)
    assert [
        i["input_hash"] for i in case_items(disputes(), include_ignored=False, include_flagged=False)
    ] == [2]

    cases = cases_of("news", "b9", items, per_case=2)
    assert [(c["number"], len(c["items"])) for c in cases] == [(1, 2), (2, 1)]
    assert all(c["business_key"].startswith("label_dispute_resolution:news:b9:") for c in cases)
    again = cases_of("news", "b9", items, per_case=2)
    assert [c["business_key"] for c in again] == [c["business_key"] for c in cases], "the same on reruns"
    left = cases_of("news", "b9", items[1:], per_case=2)  # item 2 settled meanwhile: the rest, a new case
    assert left[0]["business_key"] not in {c["business_key"] for c in cases}
    assert "task" not in reviewer_view(cases[0])[0]["versions"][0], "stored tasks stay with the flow"
    with pytest.raises(ValueError, match="at least 1"):
        cases_of("news", "b9", items, per_case=0)


@pytest.mark.parametrize(
    ("submitted", "problem"),
    [
        (None, "no decisions"),
        ([], "no decisions"),
        ("not json", "is not JSON"),
        ([{"item": "9:ORG", "decision": "rejected"}], "item '9:ORG' is not in this case"),
        (
            [{"item": "2:ORG", "decision": "chosen", "version": "v7"}],
            "version 'v7' is not one of the item's versions",
        ),
        ([{"item": "2:ORG", "decision": "maybe"}], "'maybe' is not one of chosen, corrected, rejected"),
        ([{"item": "2:ORG", "decision": "corrected", "correction": {}}], "a correction must set one of"),
        (
            [{"item": "2:ORG", "decision": "rejected"}, {"item": "2:ORG", "decision": "rejected"}],
            "decided twice",
        ),
        ([{"item": "2:ORG", "decision": "rejected"}], "item 3:ORG has no decision"),
        ([{"item": "2:ORG", "decision": "chosen", "version": ["v1"]}], "version ['v1'] is not one of"),
        ([{"item": "2:ORG", "decision": "corrected", "correction": {"answer": "maybe"}}], "answer 'maybe'"),
        ([{"item": "2:ORG", "decision": "corrected", "correction": {"label": "PER"}}], "must set one of"),
        (
            [{"item": "2:ORG", "decision": "corrected", "correction": {"spans": [{"start": 0, "end": 99}]}}],
            "spans must be a list",
        ),
    ],
)
def test_decisions_that_do_not_fit_the_case_are_refused_naming_why(submitted, problem):
    case = cases_of("news", "b9", case_items(disputes())[:2], per_case=2)[0]
    with pytest.raises(AdjudicationInvalid) as refused:
        parse_decisions(case, submitted)
    assert any(problem in p for p in refused.value.problems), refused.value.problems


def test_each_decision_becomes_an_adjudicated_example_with_its_provenance():
    case = cases_of("news", "b9", case_items(disputes()), per_case=3)[0]
    decided = parse_decisions(
        case,
        json.dumps(
            [
                {"item": "2:ORG", "decision": "chosen", "version": "v2"},
                {
                    "item": "3:ORG",
                    "decision": "corrected",
                    "correction": {"answer": "reject"},
                    "comment": "no org",
                },
                {"item": "4:ORG", "decision": "rejected"},
            ]
        ),
    )
    made = {
        item["input_hash"]: adjudicated_example(
            item,
            decided[item["item"]],
            reviewer="senior@x.com",
            decided_at="t",
            process_instance_id="p1",
            session="news_adjudicated-adjudication",
        )
        for item in case["items"]
    }
    chosen, corrected, rejected = made[2], made[3], made[4]
    assert (chosen["answer"], chosen["_task_hash"]) == ("accept", 20), "the version as the annotator gave it"
    assert chosen["meta"]["adjudication"] == {
        "process_instance_id": "p1",
        "reviewer": "senior@x.com",
        "decided_at": "t",
        "decision": "chosen",
        "versions_from": ["news-alice"],
        "reasons": ["conflict"],
    }
    assert corrected["answer"] == "reject" and corrected["meta"]["adjudication"]["comment"] == "no org"
    assert corrected["_task_hash"] != 30 and corrected["meta"]["adjudication"]["versions_from"] == []
    assert rejected["answer"] == "reject" and "flagged" not in rejected
    assert all(
        e["_adjudicated"] is True and e["_session_id"] == "news_adjudicated-adjudication"
        for e in made.values()
    )

    settled = build_consensus(ANSWERS, adjudications=made.values())
    assert settled.disputes == [] and settled.resolved == 3


def test_the_adjudication_dataset_is_the_metas_or_named_after_the_dataset():
    assert adjudication_dataset("news", {}) == "news_adjudicated"
    assert adjudication_dataset("news", {"adjudication_dataset": "news_gold"}) == "news_gold"
