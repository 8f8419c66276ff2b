"""QA rounds: current answers, the Clopper-Pearson bound and sample size, seeded rounds, checked
judgements, the round's figures and verdict, and rework tasks whose answers become corrections."""

from __future__ import annotations

import json
import math
import random
from itertools import pairwise

import pytest

from prodigy_opentext.core.qa import (
    ESCALATED,
    PASSED,
    REWORK,
    SAME_STRATUM,
    correction_of,
    current_answers,
    draw_round,
    figures_summary,
    parse_judgements,
    qa_business_key,
    reviewer_view,
    rework_answers,
    rework_dataset,
    rework_task,
    round_figures,
    round_result,
    sample_size,
    upper_bound,
)
from prodigy_opentext.core.submissions import PerItemForm, per_item_entries
from prodigy_opentext.exceptions import QAJudgementsInvalid, SubmissionInvalid

RULE = {"max_error_rate": 0.1, "confidence": 0.95, "max_rounds": 3}


def answer(input_hash: int, who: str, verdict: str = "accept", label: str = "ORG", **extra) -> dict:
    session = f"news-{who}"
    return {
        "text": f"text {input_hash}",
        "label": label,
        "_input_hash": input_hash,
        "_task_hash": input_hash * 10 + (label == "PER"),
        "answer": verdict,
        "_annotator_id": session,
        "_session_id": session,
        "_timestamp": 1,
        **extra,
    }


def batch(strata: dict[tuple[str, str], int]) -> list[dict]:
    """One answer per item, ``count`` items per (label, annotator), input hashes numbered from 1."""
    answers, number = [], 0
    for (label, who), count in strata.items():
        for _ in range(count):
            number += 1
            answers.append(answer(number, who, label=label))
    return answers


BIG = {("ORG", "alice"): 300, ("ORG", "bob"): 150, ("PER", "alice"): 100, ("PER", "bob"): 50}
SMALL = {("ORG", "alice"): 20, ("ORG", "bob"): 10, ("PER", "alice"): 10}


def binomial_cdf(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


def clopper_pearson_bracket(k: int, n: int, confidence: float, step: float = 1e-4) -> tuple[float, float]:
    """Brute force: the first rate on a grid where ``k`` or fewer failures become less likely than alpha."""
    alpha = 1 - confidence
    for i in range(1, round(1 / step) + 1):
        if binomial_cdf(k, n, i * step) <= alpha:
            return (i - 1) * step, i * step
    raise AssertionError("no rate on the grid")


# --- upper_bound and sample_size ------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 5, 28, 29, 100])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_no_failure_bound_is_one_minus_alpha_to_the_one_over_n(n, confidence):
    assert upper_bound(0, n, confidence) == pytest.approx(1 - (1 - confidence) ** (1 / n), abs=1e-12)


def test_29_clean_answers_pass_10_percent_at_95_and_28_do_not():
    assert upper_bound(0, 29, 0.95) == pytest.approx(0.0981, abs=1e-4)
    assert upper_bound(0, 29, 0.95) <= 0.1
    assert upper_bound(0, 28, 0.95) > 0.1


@pytest.mark.parametrize(
    ("failed", "sampled", "confidence", "exact"),
    [  # the Beta(k + 1, n - k) quantile at the confidence
        (1, 29, 0.95, 0.153392),
        (2, 50, 0.95, 0.120614),
        (5, 100, 0.95, 0.102253),
        (3, 29, 0.95, 0.246139),
        (1, 10, 0.90, 0.336848),
        (7, 40, 0.99, 0.356462),
    ],
)
def test_bound_is_the_exact_clopper_pearson_figure(failed, sampled, confidence, exact):
    bound = upper_bound(failed, sampled, confidence)
    low, high = clopper_pearson_bracket(failed, sampled, confidence)
    assert low < bound <= high
    assert binomial_cdf(failed, sampled, bound) == pytest.approx(1 - confidence, abs=1e-9)
    if exact is not None:
        assert bound == pytest.approx(exact, abs=1e-6)


def test_bound_grows_with_failures_and_confidence_and_is_certain_when_nothing_is_known():
    bounds = [upper_bound(k, 40, 0.95) for k in range(40)]
    assert all(a < b for a, b in pairwise(bounds))
    assert all(k / 40 <= b < 1 for k, b in enumerate(bounds))
    assert upper_bound(2, 40, 0.9) < upper_bound(2, 40, 0.95) < upper_bound(2, 40, 0.99)
    assert upper_bound(40, 40, 0.95) == 1.0
    assert upper_bound(45, 40, 0.95) == 1.0
    assert upper_bound(0, 0, 0.95) == 1.0


def test_sample_size_is_the_smallest_that_can_pass_capped_by_the_batch():
    assert sample_size(1000, 0.1, 0.95) == 29
    assert sample_size(10, 0.1, 0.95) == 10
    assert sample_size(0, 0.1, 0.95) == 0
    for rate in (0.01, 0.02, 0.05, 0.1, 0.2):
        for confidence in (0.9, 0.95, 0.99):
            n = sample_size(10**6, rate, confidence)
            assert upper_bound(0, n, confidence) <= rate < upper_bound(0, n - 1, confidence), (
                rate,
                confidence,
            )


@pytest.mark.parametrize(
    ("rate", "confidence", "message"),
    [
        (0, 0.95, "max_error_rate"),
        (1, 0.95, "max_error_rate"),
        (-0.1, 0.95, "max_error_rate"),
        (1.5, 0.95, "max_error_rate"),
        (0.1, 0, "confidence"),
        (0.1, 1, "confidence"),
    ],
)
def test_bad_rates_are_refused(rate, confidence, message):
    with pytest.raises(ValueError, match=message):
        sample_size(100, rate, confidence)


# --- current_answers ------------------------------------------------------------------------------------


def test_current_answers_are_each_annotators_latest_without_ignores_or_adjudications():
    stream = [
        answer(1, "alice", "reject", _timestamp=5),
        answer(1, "alice", "accept", _timestamp=2),  # older, though later in the stream
        answer(1, "bob", "accept"),
        answer(1, "bob", "reject", label="PER"),  # another question about the same text
        answer(2, "alice", "ignore"),
        answer(3, "alice", "ignore", _timestamp=1),
        answer(3, "alice", "accept", _timestamp=3),  # answered after skipping
        answer(4, "bob", "accept", _timestamp=1),
        answer(4, "bob", "ignore", _timestamp=4),  # skipped on a second look: labels nothing now
        answer(1, "lead", "reject", _adjudicated=True, _timestamp=9),
    ]
    current = current_answers(stream)
    assert [(t["_input_hash"], t["label"], t["_annotator_id"], t["answer"]) for t in current] == [
        (1, "ORG", "news-alice", "reject"),
        (1, "ORG", "news-bob", "accept"),
        (1, "PER", "news-bob", "reject"),
        (3, "ORG", "news-alice", "accept"),
    ]
    shuffled = stream[:]
    random.Random(3).shuffle(shuffled)
    assert current_answers(shuffled) == current, "the order of the stream does not matter"
    assert current_answers([]) == []


def test_a_rework_answer_replaces_the_answer_it_corrects():
    original = answer(1, "alice", "accept", spans=[{"start": 0, "end": 4, "label": "ORG"}])
    task = rework_task(
        original,
        {"item": "1:ORG@news-alice", "verdict": "fail", "reason": "span_boundary", "comment": ""},
        dataset="news",
        qa_round=1,
        instructions="fix it",
        process_instance_id="pi-1",
    )
    session = "news_rework_r1-alice"
    given = {
        **task,
        "answer": "accept",
        "spans": [{"start": 0, "end": 6, "label": "ORG"}],
        "_annotator_id": session,
        "_session_id": session,
        "_timestamp": 50,
    }
    current = current_answers([original, answer(1, "bob", "accept"), correction_of(given, "news_rework_r1")])
    assert [(t["_annotator_id"], t["_session_id"]) for t in current] == [
        ("news-alice", session),
        ("news-bob", "news-bob"),
    ]
    assert current[0]["spans"] == [{"start": 0, "end": 6, "label": "ORG"}]
    assert current[0]["meta"]["rework_of"] == "news-alice"


# --- draw_round ---------------------------------------------------------------------------------------


def test_a_round_is_seeded_by_dataset_version_and_round():
    answers = current_answers(batch(BIG))
    first = draw_round("news", "v3", 1, answers, size=60, **RULE)
    assert first["business_key"] == "qa_review:news:v3:r1" == qa_business_key("news", "v3", 1)
    shuffled = batch(BIG)
    random.Random(8).shuffle(shuffled)
    assert draw_round("news", "v3", 1, current_answers(shuffled), size=60, **RULE) == first
    second = draw_round("news", "v3", 2, answers, size=60, **RULE)
    assert second["business_key"] == "qa_review:news:v3:r2"
    ids = {item["item"] for item in first["items"]}
    assert ids != {item["item"] for item in second["items"]}, "each round draws its own sample"
    assert ids != {item["item"] for item in draw_round("news", "v4", 1, answers, size=60, **RULE)["items"]}


def test_a_round_holds_its_rule_its_strata_and_the_sampled_answers():
    answers = current_answers(batch(BIG))
    drawn = draw_round("news", "v3", 1, answers, size=60, annotators=["a@x.com"], **RULE)
    assert (drawn["dataset"], drawn["version"], drawn["round"], drawn["max_rounds"]) == ("news", "v3", 1, 3)
    assert (drawn["population"], drawn["max_error_rate"], drawn["confidence"]) == (600, 0.1, 0.95)
    assert drawn["annotators"] == ["a@x.com"]
    assert drawn["strata"] == {
        "ORG|news-alice": {"population": 300, "sampled": 30},
        "ORG|news-bob": {"population": 150, "sampled": 15},
        "PER|news-alice": {"population": 100, "sampled": 10},
        "PER|news-bob": {"population": 50, "sampled": 5},
    }
    assert len(drawn["items"]) == 60
    item = drawn["items"][0]
    task = item["task"]
    assert item["item"] == f"{task['_input_hash']}:{task['label']}@{task['_annotator_id']}"
    assert item["stratum"] == f"{task['label']}|{task['_annotator_id']}"
    assert (item["input_hash"], item["label"], item["annotator"], item["answer"], item["text"]) == (
        task["_input_hash"],
        task["label"],
        task["_annotator_id"],
        "accept",
        task["text"],
    )
    assert task in answers
    assert all("task" not in shown for shown in reviewer_view(drawn))
    assert [shown["item"] for shown in reviewer_view(drawn)] == [i["item"] for i in drawn["items"]]


def test_a_round_is_as_large_as_asked_or_as_it_must_be_to_pass():
    answers = current_answers(batch(BIG))
    assert len(draw_round("news", "v3", 1, answers, size=5, **RULE)["items"]) == 5
    assert len(draw_round("news", "v3", 1, answers, fraction=0.1, **RULE)["items"]) == 60
    default = draw_round("news", "v3", 1, answers, **RULE)
    assert len(default["items"]) == 29 == sum(s["sampled"] for s in default["strata"].values())
    strict = draw_round("news", "v3", 1, answers, max_error_rate=0.05, confidence=0.99, max_rounds=2)
    assert len(strict["items"]) == sample_size(600, 0.05, 0.99) == 90
    few = current_answers(batch({("ORG", "alice"): 7}))
    assert len(draw_round("news", "v3", 1, few, **RULE)["items"]) == 7, "a small batch is sampled whole"


@pytest.mark.parametrize(("qa_round", "max_rounds"), [(0, 3), (1, 0)])
def test_rounds_are_counted_from_one(qa_round, max_rounds):
    with pytest.raises(ValueError, match="at least 1"):
        draw_round(
            "news", "v3", qa_round, batch(SMALL), max_error_rate=0.1, confidence=0.95, max_rounds=max_rounds
        )


# --- parse_judgements -----------------------------------------------------------------------------------


def small_round():
    answers = current_answers([answer(1, "alice"), answer(2, "bob"), answer(3, "alice", label="PER")])
    return draw_round("news", "v3", 1, answers, **RULE)


def test_the_sample_is_named_by_item_and_session():
    assert [item["item"] for item in small_round()["items"]] == [
        "1:ORG@news-alice",
        "2:ORG@news-bob",
        "3:PER@news-alice",
    ]


PASS_REST = [{"item": "2:ORG@news-bob", "verdict": "pass"}, {"item": "3:PER@news-alice", "verdict": "pass"}]


@pytest.mark.parametrize(
    ("submitted", "problem"),
    [
        (None, "no judgements"),
        ([], "no judgements"),
        ({"item": "1:ORG@news-alice", "verdict": "pass"}, "no judgements"),
        ("not json", "qa_judgements is not JSON"),
        (["pass", *PASS_REST], "judgement 1 is not an object"),
        (
            [{"item": "9:ORG@news-alice", "verdict": "pass"}, *PASS_REST],
            "answer '9:ORG@news-alice' is not in this sample",
        ),
        (
            [{"item": "1:ORG@news-alice", "verdict": "pass"}, *PASS_REST, PASS_REST[0]],
            "judgement 4: answer '2:ORG@news-bob' is judged twice",
        ),
        (PASS_REST, "answer 1:ORG@news-alice has no verdict"),
        (
            [{"item": "1:ORG@news-alice"}, *PASS_REST],
            "judgement 1 (answer 1:ORG@news-alice): verdict None is not one of pass, fail",
        ),
        ([{"item": "1:ORG@news-alice", "verdict": "maybe"}, *PASS_REST], "verdict 'maybe' is not one of"),
        ([{"item": "1:ORG@news-alice", "verdict": "fail"}, *PASS_REST], "a failure needs a reason"),
        (
            [{"item": "1:ORG@news-alice", "verdict": "fail", "reason": "sloppy"}, *PASS_REST],
            "(got 'sloppy')",
        ),
        (
            [{"item": "1:ORG@news-alice", "verdict": "fail", "reason": "other", "comment": "  "}, *PASS_REST],
            "reason 'other' needs a comment",
        ),
    ],
)
def test_judgements_that_do_not_fit_the_sample_are_refused_naming_why(submitted, problem):
    with pytest.raises(QAJudgementsInvalid) as refused:
        parse_judgements(small_round(), submitted)
    assert any(problem in p for p in refused.value.problems), refused.value.problems


def test_every_problem_is_named_at_once():
    submitted = [
        {"item": "1:ORG@news-alice", "verdict": "fail"},
        {"item": "1:ORG@news-alice", "verdict": "pass"},  # the first one was wrong: still twice
        {"item": "7:ORG@news-bob", "verdict": "pass"},
    ]
    with pytest.raises(QAJudgementsInvalid) as refused:
        parse_judgements(small_round(), submitted)
    problems = refused.value.problems
    assert len(problems) == 5, problems
    assert problems[0].startswith("judgement 1 (answer 1:ORG@news-alice): a failure needs a reason")
    assert problems[1] == "judgement 2: answer '1:ORG@news-alice' is judged twice"
    assert problems[2] == "judgement 3: answer '7:ORG@news-bob' is not in this sample"
    assert problems[3:] == ["answer 2:ORG@news-bob has no verdict", "answer 3:PER@news-alice has no verdict"]
    assert isinstance(refused.value, SubmissionInvalid) and isinstance(refused.value, ValueError)


def test_valid_judgements_are_read_by_answer():
    submitted = [
        {"item": "3:PER@news-alice", "verdict": "fail", "reason": "other", "comment": " not a person "},
        {"item": "1:ORG@news-alice", "verdict": "pass", "reason": "wrong_label", "comment": "fine"},
        {"item": "2:ORG@news-bob", "verdict": "fail", "reason": "wrong_label"},
    ]
    judged = parse_judgements(small_round(), json.dumps(submitted))
    assert judged == {
        "3:PER@news-alice": {
            "item": "3:PER@news-alice",
            "verdict": "fail",
            "reason": "other",
            "comment": "not a person",
        },
        "1:ORG@news-alice": {
            "item": "1:ORG@news-alice",
            "verdict": "pass",
            "reason": None,
            "comment": "fine",
        },
        "2:ORG@news-bob": {
            "item": "2:ORG@news-bob",
            "verdict": "fail",
            "reason": "wrong_label",
            "comment": "",
        },
    }
    assert parse_judgements(small_round(), submitted) == judged


def test_per_item_entries_speak_the_forms_words():
    class Refused(SubmissionInvalid):
        pass

    form = PerItemForm(
        "decisions", "decision", "item", "this case", "has no decision", "decided twice", Refused
    )
    with pytest.raises(Refused) as refused:
        per_item_entries(form, [{"item": "a"}, {"item": "a"}, {"item": "c"}], ["a", "b"], lambda _k, _e: None)
    assert refused.value.problems == [
        "decision 2: item 'a' is decided twice",
        "decision 3: item 'c' is not in this case",
        "item b has no decision",
    ]
    taken = per_item_entries(form, '[{"item": "b", "x": 1}, {"item": "a"}]', ["a", "b"], lambda _k, _e: None)
    assert taken == {"b": {"item": "b", "x": 1}, "a": {"item": "a"}}
    with pytest.raises(Refused, match="decision 1 \\(item a\\): bad"):
        per_item_entries(form, [{"item": "a"}], ["a"], lambda _k, _e: "bad")


# --- round_figures and round_result ---------------------------------------------------------------------


def judge(qa_round, failures: dict[str, str]) -> dict:
    """Every sampled answer passes but those in ``failures`` (item -> reason)."""
    return parse_judgements(
        qa_round,
        [
            {"item": item["item"], "verdict": "fail", "reason": failures[item["item"]], "comment": "c"}
            if item["item"] in failures
            else {"item": item["item"], "verdict": "pass"}
            for item in qa_round["items"]
        ],
    )


def failing_round():
    """8 of 40 answers sampled; two of ORG|news-alice and one of PER|news-alice fail."""
    drawn = draw_round("news", "v3", 1, current_answers(batch(SMALL)), size=8, **RULE)
    org = [i["item"] for i in drawn["items"] if i["stratum"] == "ORG|news-alice"]
    per = [i["item"] for i in drawn["items"] if i["stratum"] == "PER|news-alice"]
    failures = {org[0]: "wrong_label", org[1]: "missed_span", per[0]: "wrong_label"}
    return drawn, judge(drawn, failures)


def test_figures_count_failures_by_reason_and_stratum_against_the_bound():
    drawn, judged = failing_round()
    figures = round_figures(drawn, judged)
    assert figures == {
        "round": 1,
        "population": 40,
        "sampled": 8,
        "failed": 3,
        "error_rate": 0.375,
        "upper_bound": round(upper_bound(3, 8, 0.95), 4),
        "max_error_rate": 0.1,
        "confidence": 0.95,
        "passed": False,
        "by_reason": {"missed_span": 1, "wrong_label": 2},
        "by_stratum": {
            "ORG|news-alice": {"sampled": 4, "failed": 2},
            "ORG|news-bob": {"sampled": 2, "failed": 0},
            "PER|news-alice": {"sampled": 2, "failed": 1},
        },
    }
    assert figures["upper_bound"] == pytest.approx(0.7108, abs=1e-4)  # Beta(4, 5) at 0.95
    assert figures_summary(figures).startswith("QA round 1 failed: 3 of 8 sampled answers (of 40) failed")


def test_a_clean_sample_passes_only_when_large_enough():
    answers = current_answers(batch(BIG))
    enough = draw_round("news", "v3", 1, answers, **RULE)
    figures = round_figures(enough, judge(enough, {}))
    assert (figures["sampled"], figures["failed"], figures["error_rate"]) == (29, 0, 0.0)
    assert figures["upper_bound"] == 0.0981 and figures["passed"] is True
    assert figures["by_reason"] == {}
    assert round_result(figures, max_rounds=3) == PASSED
    short = draw_round("news", "v3", 1, answers, size=28, **RULE)
    assert round_figures(short, judge(short, {}))["passed"] is False


def test_a_sample_of_the_whole_batch_is_judged_by_its_error_rate():
    drawn = draw_round("news", "v3", 1, current_answers(batch({("ORG", "alice"): 10})), **RULE)
    assert len(drawn["items"]) == drawn["population"] == 10
    ids = [item["item"] for item in drawn["items"]]
    one = round_figures(drawn, judge(drawn, {ids[0]: "guidelines"}))
    assert (one["error_rate"], one["upper_bound"], one["passed"]) == (0.1, 0.1, True)
    two = round_figures(drawn, judge(drawn, {ids[0]: "guidelines", ids[1]: "extra_span"}))
    assert (two["error_rate"], two["upper_bound"], two["passed"]) == (0.2, 0.2, False)


@pytest.mark.parametrize(
    ("qa_round", "max_rounds", "result"),
    [(1, 3, REWORK), (2, 3, REWORK), (3, 3, ESCALATED), (1, 1, ESCALATED)],
)
def test_a_failed_round_goes_to_rework_until_the_last_then_to_the_leads(qa_round, max_rounds, result):
    drawn = draw_round(
        "news",
        "v3",
        qa_round,
        current_answers(batch(BIG)),
        max_error_rate=0.1,
        confidence=0.95,
        max_rounds=max_rounds,
    )
    failed = round_figures(drawn, judge(drawn, {drawn["items"][0]["item"]: "wrong_answer"}))
    assert failed["passed"] is False and failed["round"] == qa_round
    assert round_result(failed, max_rounds) == result
    passed = round_figures(drawn, judge(drawn, {}))
    assert round_result(passed, max_rounds) == PASSED


# --- rework_answers -------------------------------------------------------------------------------------


def test_failed_scope_sends_back_the_failed_answers_with_their_judgements():
    drawn, judged = failing_round()
    chosen = rework_answers(drawn, judged, current_answers(batch(SMALL)), "failed")
    failed = [i for i in drawn["items"] if judged[i["item"]]["verdict"] == "fail"]
    assert [(task, judgement) for task, judgement in chosen] == [
        (i["task"], judged[i["item"]]) for i in failed
    ]
    assert len(chosen) == 3


def test_stratum_scope_sends_back_every_current_answer_of_a_failing_stratum_once():
    drawn, judged = failing_round()
    answers = current_answers(batch(SMALL))
    chosen = rework_answers(drawn, judged, answers, "stratum")
    strata = [f"{task['label']}|{task['_annotator_id']}" for task, _ in chosen]
    assert sorted(set(strata)) == ["ORG|news-alice", "PER|news-alice"], "ORG|news-bob had no failure"
    assert len(chosen) == 30 == 20 + 10
    keys = [(task["_input_hash"], task["label"], task["_annotator_id"]) for task, _ in chosen]
    assert len(set(keys)) == len(keys), "each answer once"
    assert sorted(keys) == sorted(
        (t["_input_hash"], t["label"], t["_annotator_id"])
        for t in answers
        if t["_annotator_id"] == "news-alice"
    )
    by_item = {f"{t['_input_hash']}:{t['label']}@{t['_annotator_id']}": j for t, j in chosen}
    for item in drawn["items"]:
        if judged[item["item"]]["verdict"] == "fail":
            assert by_item[item["item"]] == judged[item["item"]]
        elif item["stratum"] != "ORG|news-bob":
            assert by_item[item["item"]] is None, "a sampled pass of a failing stratum carries no judgement"
    assert sum(j is not None for j in by_item.values()) == 3


def test_an_unknown_rework_scope_is_refused():
    drawn, judged = failing_round()
    with pytest.raises(ValueError, match="rework scope"):
        rework_answers(drawn, judged, [], "everything")


# --- rework_task and correction_of ----------------------------------------------------------------------


def stored_answer() -> dict:
    return answer(
        5,
        "alice",
        "accept",
        tokens=[{"text": "Acme", "start": 0, "end": 4, "id": 0}],
        spans=[{"start": 0, "end": 4, "label": "ORG"}],
        meta={"source": "feed", "qa_reason": "from an older round", "qa_note": "round 1"},
        _view_id="ner_manual",
        _timestamp=1700000000,
    )


def test_a_rework_task_keeps_the_content_and_says_what_to_redo():
    original = stored_answer()
    judgement = {
        "item": "5:ORG@news-alice",
        "verdict": "fail",
        "reason": "span_boundary",
        "comment": "Acme Inc",
    }
    task = rework_task(
        original,
        judgement,
        dataset="news",
        qa_round=2,
        instructions="Fix the span.",
        process_instance_id="pi-9",
    )
    assert set(task) == {"text", "tokens", "spans", "label", "_input_hash", "_task_hash", "meta"}
    assert (task["text"], task["label"], task["_input_hash"], task["_task_hash"]) == ("text 5", "ORG", 5, 50)
    assert task["spans"] == original["spans"] and task["tokens"] == original["tokens"]
    assert task["meta"] == {
        "source": "feed",
        "rework_round": 2,
        "instructions": "Fix the span.",
        "previous_answer": "accept",
        "qa_reason": "span_boundary",
        "qa_comment": "Acme Inc",
        "annotator": "alice",
        "rework_of": "news-alice",
        "qa_process": "pi-9",
    }
    assert original["meta"] == {"source": "feed", "qa_reason": "from an older round", "qa_note": "round 1"}
    assert rework_dataset("news", "b9", 2) == "news_rework_b9_r2"


def test_a_rework_task_for_an_answer_of_a_failing_stratum_says_so():
    original = {**stored_answer(), "_annotator_id": None, "_session_id": "alice", "meta": None}
    task = rework_task(
        original, None, dataset="news", qa_round=1, instructions="", process_instance_id="pi-1"
    )
    assert task["meta"]["qa_reason"] == SAME_STRATUM
    assert task["meta"]["qa_comment"] == ""
    assert (task["meta"]["annotator"], task["meta"]["rework_of"]) == ("alice", "alice")


def test_an_answer_to_a_rework_task_is_a_correction_of_the_original_session():
    task = rework_task(
        stored_answer(), None, dataset="news", qa_round=1, instructions="", process_instance_id="pi-1"
    )
    session = "news_rework_r1-alice"
    given = {**task, "answer": "reject", "_annotator_id": session, "_session_id": session, "_timestamp": 9}
    rework = "news_rework_r1"
    corrected = correction_of(given, rework)
    assert corrected == {**given, "_annotator_id": "news-alice"}
    assert corrected["_session_id"] == session
    assert correction_of({**given, "answer": "accept"}, rework)["_annotator_id"] == "news-alice"
    assert correction_of({**given, "answer": "ignore"}, rework) is None, (
        "a skipped rework task corrects nothing"
    )
    assert correction_of(stored_answer(), rework) is None, "an ordinary answer is not a correction"
    assert correction_of({**given, "meta": None}, rework) is None
    assert correction_of({**given, "meta": "rework_of"}, rework) is None
    dave = f"{rework}-dave"
    assert correction_of({**given, "_session_id": dave, "_annotator_id": dave}, rework) is None, (
        "another session's answer to alice's task counts for nobody"
    )
