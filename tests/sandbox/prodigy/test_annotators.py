"""Simulated annotators: seeded answers and disagreements derived from the task."""

from __future__ import annotations

import pytest

from sandbox.prodigy.annotators import Behaviour, SimulatedAnnotator
from sandbox.prodigy.errors import ProdigyError
from sandbox.prodigy.tasks import set_hashes

TOKENS = [
    {"text": "mock", "start": 0, "end": 4, "id": 0},
    {"text": "duck", "start": 5, "end": 9, "id": 1},
    {"text": "and", "start": 10, "end": 13, "id": 2},
    {"text": "hoisin", "start": 14, "end": 20, "id": 3},
]
MANUAL = set_hashes(
    {
        "text": "mock duck and hoisin",
        "tokens": TOKENS,
        "spans": [
            {"start": 0, "end": 9, "token_start": 0, "token_end": 1, "label": "INGRED"},
            {"start": 14, "end": 20, "token_start": 3, "token_end": 3, "label": "INGRED"},
        ],
        "answer": "accept",
    }
)
ALWAYS_DISAGREE = Behaviour(disagree=1.0, reject=0.0, ignore=0.0, flag=0.0)


def annotator(name, seed=1, behaviour=ALWAYS_DISAGREE, labels=("INGRED", "DISH"), manual=True):
    return SimulatedAnnotator(name, seed, behaviour, list(labels), manual)


def test_same_seed_same_answer_and_other_seeds_vary():
    tasks = [set_hashes({"text": f"issue {n}", "label": "DOCS"}) for n in range(40)]
    behaviour = Behaviour(disagree=0.3, reject=0.1, ignore=0.1, flag=0.1)
    first = [annotator("alice", 3, behaviour, ["DOCS", "BUG"], False).answer(task) for task in tasks]
    again = [
        annotator("alice", 3, behaviour, ["DOCS", "BUG"], False).answer(task) for task in reversed(tasks)
    ]
    other = [annotator("alice", 4, behaviour, ["DOCS", "BUG"], False).answer(task) for task in tasks]
    assert first == list(reversed(again)), "answers do not depend on the order tasks arrive in"
    assert first != other
    assert {answer["answer"] for answer in first} == {"accept", "reject", "ignore"}
    assert any(answer.get("flagged") for answer in first)
    assert all(0 <= answer["meta"]["score"] <= 1 for answer in first)


def test_manual_disagreement_changes_the_spans_on_the_same_input():
    answers = [annotator(f"a{n}").answer(MANUAL) for n in range(30)]
    assert all(answer["_input_hash"] == MANUAL["_input_hash"] for answer in answers)
    assert all(answer["spans"] != MANUAL["spans"] for answer in answers)
    span_sets = {tuple((s["start"], s["end"], s["label"]) for s in answer["spans"]) for answer in answers}
    assert ((14, 20, "INGRED"),) in span_sets, "a span dropped"
    assert any(("DISH" in [label for *_, label in spans]) for spans in span_sets), "a span relabelled"
    assert ((0, 13, "INGRED"), (14, 20, "INGRED")) in span_sets, "a span widened by one token"
    widened = next(a for a in answers if a["spans"][0]["end"] == 13)
    assert widened["spans"][0]["token_end"] == 2


def test_binary_and_choice_disagreements():
    binary = set_hashes(
        {"text": "Nike", "spans": [{"start": 0, "end": 4, "label": "BRAND"}], "answer": "accept"}
    )
    flipped = annotator("bob", manual=False).answer(binary)
    assert flipped["answer"] == "reject" and flipped["spans"] == binary["spans"]
    choice = set_hashes({"text": "pick", "options": [{"id": "a"}, {"id": "b"}, {"id": "c"}]})
    agreed = annotator("carol", behaviour=Behaviour(0, 0, 0, 0)).answer(choice)
    disagreed = annotator("carol").answer(choice)
    assert len(agreed["accept"]) == 1 and disagreed["accept"] != agreed["accept"]
    assert annotator("dave", behaviour=Behaviour(0, 0, 0, 0)).answer(choice)["accept"] == agreed["accept"]


def test_a_score_already_in_meta_is_kept_and_the_same_for_everyone():
    task = set_hashes({"text": "x", "meta": {"score": 0.25, "section": "a"}})
    assert annotator("a").answer(task)["meta"] == {"score": 0.25, "section": "a"}
    unscored = set_hashes({"text": "y"})
    assert annotator("a").answer(unscored)["meta"] == annotator("b").answer(unscored)["meta"]


def test_behaviour_rejects_impossible_rates():
    with pytest.raises(ProdigyError, match="--disagree must be between 0 and 1"):
        Behaviour(disagree=1.5)
    with pytest.raises(ProdigyError, match="--reject plus --ignore must not exceed 1"):
        Behaviour(reject=0.6, ignore=0.6)
