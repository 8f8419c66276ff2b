"""Inter-annotator agreement on Prodigy answers: Cohen's kappa for two annotators, Krippendorff's alpha
(nominal) for more, percent agreement, and for NER the pairwise span F1 that Prodigy users read.

Agreement is computed where annotators overlap: on items (one question about one input) that at least two
annotators answered. What an annotator "said" about an item is their *decision*: the answer together with
what they marked (the spans for NER, the accepted options for choice tasks); the question's own ``label``
(binary text classification asks one question per label) is part of the item, not the decision. Consensus
building (:mod:`prodigy_opentext.core.consensus`) uses the same items and decisions, so both agree on what a
disagreement is.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from itertools import combinations
from typing import Any

from prodigy_opentext.core.payloads import Agreement
from prodigy_opentext.core.records import annotator_of

ItemKey = tuple[Any, Any]
Decision = tuple[Any, frozenset, frozenset]


def item_key(task: Mapping[str, Any]) -> ItemKey:
    """The question a task asks: its input (``_input_hash``) and, for binary classification, its ``label``."""
    return (task.get("_input_hash"), task.get("label"))


def decision_of(task: Mapping[str, Any]) -> Decision:
    """What the annotator decided: answer, marked spans ``(start, end, label)`` and accepted options."""
    spans = frozenset(
        (span.get("start"), span.get("end"), span.get("label"))
        for span in task.get("spans") or ()
        if isinstance(span, Mapping)
    )
    accepted = (
        frozenset(str(option) for option in task.get("accept") or ()) if task.get("options") else frozenset()
    )
    return (task.get("answer"), spans, accepted)


def latest_by_annotator(versions: Iterable[Mapping[str, Any]]) -> dict[str | None, Mapping[str, Any]]:
    """Each annotator's latest answer to one item (by ``_timestamp``; later in the stream wins a tie).

    An annotator who answers the same question again (a rework round, a second session) replaces their
    earlier answer rather than voting twice.
    """
    latest: dict[str | None, Mapping[str, Any]] = {}
    for task in versions:
        annotator = annotator_of(task)
        previous = latest.get(annotator)
        if previous is None or (task.get("_timestamp") or 0) >= (previous.get("_timestamp") or 0):
            latest[annotator] = task
    return latest


def cohen_kappa(pairs: Sequence[tuple[Hashable, Hashable]]) -> float | None:
    """Cohen's kappa of two raters over ``(rater_a, rater_b)`` category pairs.

    ``None`` when chance agreement is total (both raters used one and the same category throughout), where
    kappa is 0/0 and undefined.
    """
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(1 for a, b in pairs if a == b) / n
    counts_a = Counter(a for a, _ in pairs)
    counts_b = Counter(b for _, b in pairs)
    expected = sum(counts_a[c] * counts_b[c] for c in counts_a) / (n * n)
    if expected == 1:
        return None
    return (observed - expected) / (1 - expected)


def krippendorff_alpha_nominal(units: Iterable[Sequence[Hashable]]) -> float | None:
    """Krippendorff's alpha for nominal data; each unit is the list of values its coders assigned.

    Units with fewer than two values are not pairable and do not count (missing data is allowed).
    ``None`` when no disagreement is possible (fewer than two pairable values, or one value throughout).
    """
    coincidences: defaultdict[tuple[Hashable, Hashable], float] = defaultdict(float)
    for values in units:
        m = len(values)
        if m < 2:
            continue
        counts = Counter(values)
        for c, n_c in counts.items():
            for k, n_k in counts.items():
                pairs = n_c * (n_c - 1) if c == k else n_c * n_k
                if pairs:
                    coincidences[(c, k)] += pairs / (m - 1)
    totals: defaultdict[Hashable, float] = defaultdict(float)
    for (c, _), weight in coincidences.items():
        totals[c] += weight
    n = sum(totals.values())
    if n < 2:
        return None
    disagreement_observed = sum(weight for (c, k), weight in coincidences.items() if c != k)
    disagreement_expected = (n * n - sum(n_c * n_c for n_c in totals.values())) / (n - 1)
    if disagreement_expected == 0:
        return None
    return 1 - disagreement_observed / disagreement_expected


Overlap = list[tuple[Any, dict[str, Decision]]]


def _overlapping_decisions(tasks: Iterable[Mapping[str, Any]]) -> Overlap:
    """Each item at least two annotators answered: its own label and ``{annotator: decision}`` (their
    latest answers)."""
    by_item: dict[ItemKey, list[Mapping[str, Any]]] = defaultdict(list)
    for task in tasks:
        by_item[item_key(task)].append(task)
    overlapping = []
    for key in sorted(by_item, key=repr):
        decisions = {
            annotator or "": decision_of(task)
            for annotator, task in latest_by_annotator(by_item[key]).items()
        }
        if len(decisions) >= 2:
            overlapping.append((key[1], decisions))
    return overlapping


def _agreement_of(items: list[dict[str, Decision]]) -> dict[str, Any]:
    """Method, value, percent agreement and per-pair figures over items given as ``{annotator: decision}``."""
    annotators = sorted({name for decisions in items for name in decisions})
    pairwise: dict[str, dict[str, Any]] = {}
    for a, b in combinations(annotators, 2):
        pairs = [(d[a], d[b]) for d in items if a in d and b in d]
        if pairs:
            pairwise[f"{a}|{b}"] = {
                "value": cohen_kappa(pairs),
                "n_items": len(pairs),
                "percent_agreement": sum(1 for x, y in pairs if x == y) / len(pairs),
                "span_f1": span_f1(pairs),
            }
    if len(annotators) < 2:
        method, value = None, None
    elif len(annotators) == 2:
        method, value = "cohen_kappa", pairwise[f"{annotators[0]}|{annotators[1]}"]["value"]
    else:
        method = "krippendorff_alpha_nominal"
        value = krippendorff_alpha_nominal([list(d.values()) for d in items])
    unanimous = sum(1 for d in items if len(set(d.values())) == 1)
    return {
        "method": method,
        "value": value,
        "n_items": len(items),
        "n_annotators": len(annotators),
        "observed_agreement": unanimous / len(items) if items else None,
        "pairwise": pairwise,
    }


def span_f1(pairs: Sequence[tuple[Decision, Decision]]) -> float | None:
    """Micro F1 of two annotators' spans (exact start, end and label) over the items they share, the one
    taken as reference for the other (F1 is symmetric); None when neither marked a span."""
    common = total = 0
    for (_, spans_a, _), (_, spans_b, _) in pairs:
        common += len(spans_a & spans_b)
        total += len(spans_a) + len(spans_b)
    return 2 * common / total if total else None


def _labels_in(item_label: Any, decisions: Mapping[str, Decision]) -> set[str]:
    """The labels an item concerns: its own (binary classification), its spans' and its accepted options'."""
    labels = {str(item_label)} if item_label is not None else set()
    for _, spans, accepted in decisions.values():
        labels.update(str(label) for _, _, label in spans if label is not None)
        labels.update(accepted)
    return labels


def _restricted(decision: Decision, label: str) -> Decision:
    """A decision as far as it concerns one label: the answer, that label's spans, whether it was accepted."""
    answer, spans, accepted = decision
    return (
        answer,
        frozenset(span for span in spans if str(span[2]) == label),
        frozenset(accepted & {label}),
    )


def annotation_agreement(tasks: Iterable[Mapping[str, Any]]) -> Agreement:
    """Agreement of the annotators of a dataset, over the items at least two of them answered.

    Returns ``method`` (``cohen_kappa`` for two annotators, ``krippendorff_alpha_nominal`` for more,
    ``None`` without overlap), ``value``, ``n_items`` (overlapping items), ``n_annotators`` (annotators
    on those items), ``observed_agreement`` (percent agreement: share of overlapping items where all
    decisions are equal), ``pairwise`` figures per annotator pair (``"a|b"``: Cohen's kappa as ``value``,
    ``percent_agreement``, ``span_f1`` for spans, ``n_items``), ``span_f1`` over all pairs, and the same
    figures ``per_label``, each decision cut down to what it says about that label.
    """
    overlapping = _overlapping_decisions(tasks)
    items = [decisions for _, decisions in overlapping]
    labels_of = [_labels_in(item_label, decisions) for item_label, decisions in overlapping]
    per_label: dict[str, dict[str, Any]] = {}
    for label in sorted(set().union(*labels_of)):
        concerned = [
            {name: _restricted(decision, label) for name, decision in decisions.items()}
            for decisions, labels in zip(items, labels_of, strict=True)
            if label in labels
        ]
        figures = _agreement_of(concerned)
        per_label[label] = {k: figures[k] for k in ("method", "value", "n_items", "observed_agreement")}
    all_pairs = [(d[a], d[b]) for d in items for a, b in combinations(sorted(d), 2)]
    overall = _agreement_of(items)
    return Agreement(
        method=overall["method"],
        value=overall["value"],
        n_items=overall["n_items"],
        n_annotators=overall["n_annotators"],
        observed_agreement=overall["observed_agreement"],
        pairwise=overall["pairwise"],
        span_f1=span_f1(all_pairs),
        per_label=per_label,
    )
