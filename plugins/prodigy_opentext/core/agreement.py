"""Inter-annotator agreement on Prodigy answers: Cohen's kappa for two annotators, Krippendorff's alpha
(nominal) for more.

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


def annotation_agreement(tasks: Iterable[Mapping[str, Any]]) -> Agreement:
    """Agreement of the annotators of a dataset, over the items at least two of them answered.

    Returns ``method`` (``cohen_kappa`` for two annotators, ``krippendorff_alpha_nominal`` for more,
    ``None`` without overlap), ``value``, ``n_items`` (overlapping items), ``n_annotators`` (annotators
    on those items), ``observed_agreement`` (share of overlapping items where all decisions are equal)
    and ``pairwise`` Cohen's kappa per annotator pair (``"a|b"``) with the items the pair shares.
    """
    by_item: dict[ItemKey, list[Mapping[str, Any]]] = defaultdict(list)
    for task in tasks:
        by_item[item_key(task)].append(task)
    overlapping: list[dict[str, Decision]] = []
    for versions in by_item.values():
        decisions = {
            annotator or "": decision_of(task) for annotator, task in latest_by_annotator(versions).items()
        }
        if len(decisions) >= 2:
            overlapping.append(decisions)
    annotators = sorted({name for decisions in overlapping for name in decisions})
    pairwise: dict[str, dict[str, Any]] = {}
    for a, b in combinations(annotators, 2):
        pairs = [(d[a], d[b]) for d in overlapping if a in d and b in d]
        if pairs:
            pairwise[f"{a}|{b}"] = {"value": cohen_kappa(pairs), "n_items": len(pairs)}
    if len(annotators) < 2:
        method, value = None, None
    elif len(annotators) == 2:
        method, value = "cohen_kappa", pairwise[f"{annotators[0]}|{annotators[1]}"]["value"]
    else:
        method = "krippendorff_alpha_nominal"
        value = krippendorff_alpha_nominal([list(d.values()) for d in overlapping])
    unanimous = sum(1 for d in overlapping if len(set(d.values())) == 1)
    return Agreement(
        method=method,
        value=value,
        n_items=len(overlapping),
        n_annotators=len(annotators),
        observed_agreement=unanimous / len(overlapping) if overlapping else None,
        pairwise=pairwise,
    )
