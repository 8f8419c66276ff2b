"""Agreement statistics against published worked examples, and on Prodigy answers."""

from __future__ import annotations

import json
from collections import defaultdict
from itertools import combinations

import pytest

from prodigy_opentext.core.agreement import (
    AgreementTally,
    _labels_in,
    _restricted,
    annotation_agreement,
    cohen_kappa,
    item_decisions,
    krippendorff_alpha_nominal,
)
from prodigy_opentext.core.consensus import item_groups
from tests.core.test_consensus import three_annotators
from tests.fixtures.samples import SAMPLE_FILES

MISSING = None


def units(*coders: list) -> list[list]:
    """Reliability data (one row per coder, one column per unit) to per-unit value lists."""
    return [[value for value in column if value is not MISSING] for column in zip(*coders, strict=True)]


def test_krippendorff_alpha_matches_krippendorffs_worked_example() -> None:
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", nominal data, 4 observers,
    # 12 units with missing values: alpha = 0.743.
    a = [1, 2, 3, 3, 2, 1, 4, 1, 2, MISSING, MISSING, MISSING]
    b = [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, MISSING, 3]
    c = [MISSING, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, MISSING]
    d = [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, MISSING]
    assert krippendorff_alpha_nominal(units(a, b, c, d)) == pytest.approx(0.743, abs=5e-4)


def test_krippendorff_alpha_matches_the_two_observer_binary_example() -> None:
    # Same paper, binary data, two observers, ten units: alpha = 0.095.
    a = [0, 1, 0, 0, 0, 0, 0, 0, 1, 0]
    b = [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    assert krippendorff_alpha_nominal(units(a, b)) == pytest.approx(0.095, abs=5e-4)


def test_krippendorff_alpha_ignores_unpairable_units_and_is_undefined_without_variation() -> None:
    assert krippendorff_alpha_nominal([["x", "x"], ["y", "y"], ["z"]]) == pytest.approx(1.0)
    assert krippendorff_alpha_nominal([["x", "x"], ["x", "x"]]) is None
    assert krippendorff_alpha_nominal([["x"]]) is None


def test_cohen_kappa_matches_the_textbook_two_by_two_example() -> None:
    # 50 items: both yes 20, A yes/B no 5, A no/B yes 10, both no 15 -> po 0.7, pe 0.5, kappa 0.4.
    pairs = [("yes", "yes")] * 20 + [("yes", "no")] * 5 + [("no", "yes")] * 10 + [("no", "no")] * 15
    assert cohen_kappa(pairs) == pytest.approx(0.4)


def test_cohen_kappa_perfect_chance_and_undefined() -> None:
    assert cohen_kappa([("a", "a"), ("b", "b")]) == pytest.approx(1.0)
    assert cohen_kappa([("a", "b"), ("b", "a")]) == pytest.approx(-1.0)
    assert cohen_kappa([("a", "a"), ("a", "a")]) is None
    assert cohen_kappa([]) is None


def ner(input_hash: int, annotator: str, spans: list[tuple[int, int, str]], answer: str = "accept") -> dict:
    return {
        "text": "Acme makes shoes in Berlin",
        "_input_hash": input_hash,
        "_task_hash": input_hash * 10,
        "_annotator_id": annotator,
        "answer": answer,
        "spans": [{"start": s, "end": e, "label": label} for s, e, label in spans],
    }


def test_two_annotators_get_cohens_kappa_over_their_overlap() -> None:
    brand, city = (0, 4, "BRAND"), (20, 26, "CITY")
    tasks = [
        ner(1, "ann-a", [brand, city]),
        ner(1, "ann-b", [city, brand]),  # same spans in another order: agreement
        ner(2, "ann-a", [brand]),
        ner(2, "ann-b", [brand], answer="reject"),  # same spans, other answer: disagreement
        ner(3, "ann-a", []),
        ner(3, "ann-b", []),
        ner(4, "ann-a", [city]),  # only one annotator: not part of the overlap
    ]
    result = annotation_agreement(tasks)
    assert result["method"] == "cohen_kappa"
    assert (result["n_items"], result["n_annotators"]) == (3, 2)
    assert result["observed_agreement"] == pytest.approx(2 / 3)
    # Categories per annotator: A = {X, Y, Z}, B = {X, Y', Z}; po = 2/3, pe = 2/9.
    assert result["value"] == pytest.approx((2 / 3 - 2 / 9) / (1 - 2 / 9))
    assert result["pairwise"]["ann-a|ann-b"]["n_items"] == 3


def test_three_annotators_get_krippendorffs_alpha_and_pairwise_kappas() -> None:
    textcat = [
        {"_input_hash": i, "label": "SPAM", "_annotator_id": who, "answer": answer, "text": "t"}
        for i, answers in enumerate([("accept", "accept", "accept"), ("reject", "reject", "accept")])
        for who, answer in zip(("a", "b", "c"), answers, strict=True)
    ]
    result = annotation_agreement(textcat)
    assert result["method"] == "krippendorff_alpha_nominal"
    assert (result["n_items"], result["n_annotators"]) == (2, 3)
    assert result["value"] == pytest.approx(krippendorff_alpha_nominal([["A", "A", "A"], ["R", "R", "A"]]))
    assert set(result["pairwise"]) == {"a|b", "a|c", "b|c"}
    assert result["pairwise"]["a|b"]["value"] == pytest.approx(1.0)


def test_binary_questions_on_the_same_input_are_separate_items_and_reanswers_replace() -> None:
    tasks = [
        {"_input_hash": 1, "label": "SPAM", "_annotator_id": "a", "answer": "accept", "_timestamp": 1},
        {"_input_hash": 1, "label": "SPAM", "_annotator_id": "b", "answer": "accept", "_timestamp": 1},
        {"_input_hash": 1, "label": "HAM", "_annotator_id": "a", "answer": "reject", "_timestamp": 1},
        {"_input_hash": 1, "label": "HAM", "_annotator_id": "b", "answer": "accept", "_timestamp": 1},
        {"_input_hash": 1, "label": "HAM", "_annotator_id": "b", "answer": "reject", "_timestamp": 5},
    ]
    result = annotation_agreement(tasks)
    assert result["n_items"] == 2
    assert result["observed_agreement"] == pytest.approx(1.0)


def test_no_overlap_means_no_statistic() -> None:
    result = annotation_agreement([ner(1, "a", []), ner(2, "b", [])])
    assert (result["method"], result["value"], result["n_items"]) == (None, None, 0)


def test_span_f1_counts_exact_spans_over_the_items_a_pair_shares() -> None:
    # item 1: both mark ORG 0-4, only a marks GPE 20-26; item 2: a marks PRODUCT 11-16, b marks 11-15.
    tasks = [
        ner(1, "a", [(0, 4, "ORG"), (20, 26, "GPE")]),
        ner(1, "b", [(0, 4, "ORG")]),
        ner(2, "a", [(11, 16, "PRODUCT")]),
        ner(2, "b", [(11, 15, "PRODUCT")]),
    ]
    result = annotation_agreement(tasks)
    # common spans 1, spans marked 3 + 2: F1 = 2 * 1 / 5
    assert result["span_f1"] == pytest.approx(0.4)
    assert result["pairwise"]["a|b"]["span_f1"] == pytest.approx(0.4)
    assert result["pairwise"]["a|b"]["percent_agreement"] == pytest.approx(0.0)


def test_agreement_per_label_looks_only_at_what_each_decision_says_about_that_label() -> None:
    tasks = [
        ner(1, "a", [(0, 4, "ORG"), (20, 26, "GPE")]),
        ner(1, "b", [(0, 4, "ORG")]),
        ner(2, "a", [(0, 4, "ORG")]),
        ner(2, "b", [(0, 4, "ORG")]),
    ]
    per_label = annotation_agreement(tasks)["per_label"]
    assert set(per_label) == {"ORG", "GPE"}
    assert per_label["ORG"]["n_items"] == 2
    assert per_label["ORG"]["observed_agreement"] == pytest.approx(1.0)
    assert per_label["GPE"]["n_items"] == 1
    assert per_label["GPE"]["observed_agreement"] == pytest.approx(0.0)


def test_binary_questions_are_grouped_per_label_by_the_question_asked() -> None:
    def binary(input_hash: int, annotator: str, label: str, answer: str) -> dict:
        return {"_input_hash": input_hash, "label": label, "_annotator_id": annotator, "answer": answer}

    tasks = [
        binary(1, "a", "SPORTS", "accept"),
        binary(1, "b", "SPORTS", "accept"),
        binary(1, "a", "POLITICS", "reject"),
        binary(1, "b", "POLITICS", "accept"),
    ]
    result = annotation_agreement(tasks)
    assert result["per_label"]["SPORTS"]["observed_agreement"] == pytest.approx(1.0)
    assert result["per_label"]["POLITICS"]["observed_agreement"] == pytest.approx(0.0)
    assert result["span_f1"] is None


def reference_agreement(tasks: list[dict]) -> dict:
    """The figures computed from the whole list with the textbook formulas (a coincidence matrix for alpha,
    the pair list for kappa and span F1), as an oracle for the tallies."""

    def alpha(units: list[list]) -> float | None:
        coincidences: dict = defaultdict(float)
        for values in units:
            if len(values) < 2:
                continue
            for i, c in enumerate(values):
                for j, k in enumerate(values):
                    if i != j:
                        coincidences[(c, k)] += 1 / (len(values) - 1)
        totals: dict = defaultdict(float)
        for (c, _), weight in coincidences.items():
            totals[c] += weight
        n = sum(totals.values())
        observed = sum(w for (c, k), w in coincidences.items() if c != k)
        expected = (n * n - sum(t * t for t in totals.values())) / (n - 1) if n >= 2 else 0
        return 1 - observed / expected if expected else None

    def kappa(pairs: list) -> float | None:
        n = len(pairs)
        observed = sum(a == b for a, b in pairs) / n
        expected = sum(
            sum(a == c for a, _ in pairs) * sum(b == c for _, b in pairs) for c in {a for a, _ in pairs}
        ) / (n * n)
        return None if expected == 1 else (observed - expected) / (1 - expected)

    def f1(pairs: list) -> float | None:
        common = sum(len(a[1] & b[1]) for a, b in pairs)
        total = sum(len(a[1]) + len(b[1]) for a, b in pairs)
        return 2 * common / total if total else None

    def figures(items: list[dict]) -> dict:
        names = sorted({name for decisions in items for name in decisions})
        pairwise = {}
        for a, b in combinations(names, 2):
            pairs = [(d[a], d[b]) for d in items if a in d and b in d]
            if pairs:
                pairwise[f"{a}|{b}"] = {
                    "value": kappa(pairs),
                    "n_items": len(pairs),
                    "percent_agreement": sum(x == y for x, y in pairs) / len(pairs),
                    "span_f1": f1(pairs),
                }
        value = (
            pairwise[f"{names[0]}|{names[1]}"]["value"]
            if len(names) == 2
            else alpha([list(d.values()) for d in items])
        )
        return {
            "value": value,
            "n_items": len(items),
            "observed_agreement": sum(len(set(d.values())) == 1 for d in items) / len(items),
            "pairwise": pairwise,
            "span_f1": f1([(d[a], d[b]) for d in items for a, b in combinations(sorted(d), 2)]),
        }

    groups: dict = defaultdict(list)
    for task in tasks:
        groups[(task["_input_hash"], task.get("label"))].append(task)
    overlap = [(key, item_decisions(versions)) for key, versions in groups.items()]
    overlap = [(key, decisions) for key, decisions in overlap if len(decisions) >= 2]
    per_label = {}
    for label in sorted({lab for key, d in overlap for lab in _labels_in(key[1], d)}):
        concerned = [
            {name: _restricted(decision, label) for name, decision in d.items()}
            for key, d in overlap
            if label in _labels_in(key[1], d)
        ]
        per_label[label] = figures(concerned)
    return {"overall": figures([d for _, d in overlap]), "per_label": per_label}


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_agreement_counted_item_by_item_in_input_hash_order_equals_the_whole_list(
    prodigy_samples_dir, name
) -> None:
    tasks = three_annotators([json.loads(line) for line in (prodigy_samples_dir / name).open("rb")])
    two = [task for task in tasks if not task["_annotator_id"].endswith("cyd")]
    for sample in (tasks, two):
        tally = AgreementTally()
        in_order = sorted(sample, key=lambda task: task["_input_hash"])
        for key, versions in item_groups(iter(in_order)):
            tally.add_item(key, versions)
        streamed, whole, expected = (
            tally.agreement(),
            annotation_agreement(sample),
            reference_agreement(sample),
        )
        assert streamed == whole
        overall = expected["overall"]
        assert (streamed["value"], streamed["observed_agreement"]) == (
            overall["value"],
            overall["observed_agreement"],
        )
        assert (streamed["n_items"], streamed["span_f1"]) == (overall["n_items"], overall["span_f1"])
        assert streamed["pairwise"] == overall["pairwise"]
        assert {
            label: (f["value"], f["n_items"], f["observed_agreement"])
            for label, f in streamed["per_label"].items()
        } == {
            label: (f["value"], f["n_items"], f["observed_agreement"])
            for label, f in expected["per_label"].items()
        }
    assert streamed["method"] == "cohen_kappa" and whole["value"] is not None


def test_alpha_counted_in_any_order_is_the_same_number() -> None:
    units = [[1, 2, 2], [3, 3, 1, 1], ["a", "b"], [2, 2, 2, 5, 5], [1]] * 7
    forward, backward = krippendorff_alpha_nominal(units), krippendorff_alpha_nominal(units[::-1])
    assert forward == backward and forward is not None
