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


class KappaTally:
    """What Cohen's kappa of two raters needs, counted pair by pair: pairs, agreements, each rater's
    category counts (the figure does not depend on the order the pairs come in)."""

    def __init__(self) -> None:
        self.n = 0
        self.agreed = 0
        self.counts_a: Counter[Hashable] = Counter()
        self.counts_b: Counter[Hashable] = Counter()

    def add(self, a: Hashable, b: Hashable) -> None:
        self.n += 1
        self.agreed += a == b
        self.counts_a[a] += 1
        self.counts_b[b] += 1

    def kappa(self) -> float | None:
        """``None`` when chance agreement is total (both raters used one and the same category
        throughout), where kappa is 0/0 and undefined."""
        n = self.n
        if n == 0:
            return None
        observed = self.agreed / n
        expected = sum(self.counts_a[c] * self.counts_b[c] for c in self.counts_a) / (n * n)
        if expected == 1:
            return None
        return (observed - expected) / (1 - expected)


def cohen_kappa(pairs: Sequence[tuple[Hashable, Hashable]]) -> float | None:
    """Cohen's kappa of two raters over ``(rater_a, rater_b)`` category pairs (see :class:`KappaTally`)."""
    tally = KappaTally()
    for a, b in pairs:
        tally.add(a, b)
    return tally.kappa()


class AlphaTally:
    """What Krippendorff's alpha (nominal) needs, counted unit by unit: how often each value was given in
    pairable units, and per unit size ``m`` the ordered pairs of different values (integers, so the figure
    does not depend on the order the units come in)."""

    def __init__(self) -> None:
        self.values: Counter[Hashable] = Counter()
        self.unequal_pairs: Counter[int] = Counter()

    def add(self, values: Sequence[Hashable]) -> None:
        """One unit: the values its coders assigned (fewer than two are not pairable and do not count)."""
        m = len(values)
        if m < 2:
            return
        counts = Counter(values)
        self.values.update(counts)
        self.unequal_pairs[m] += m * m - sum(n_c * n_c for n_c in counts.values())

    def alpha(self) -> float | None:
        """``None`` when no disagreement is possible (fewer than two pairable values, or one value)."""
        n = sum(self.values.values())
        if n < 2:
            return None
        disagreement_observed = sum(pairs / (m - 1) for m, pairs in sorted(self.unequal_pairs.items()))
        disagreement_expected = (n * n - sum(n_c * n_c for n_c in self.values.values())) / (n - 1)
        if disagreement_expected == 0:
            return None
        return 1 - disagreement_observed / disagreement_expected


def krippendorff_alpha_nominal(units: Iterable[Sequence[Hashable]]) -> float | None:
    """Krippendorff's alpha for nominal data; each unit is the list of values its coders assigned
    (missing data is allowed; see :class:`AlphaTally`)."""
    tally = AlphaTally()
    for values in units:
        tally.add(values)
    return tally.alpha()


def item_decisions(versions: Iterable[Mapping[str, Any]]) -> dict[str, Decision]:
    """``{annotator: decision}`` of one item's answers, each annotator's latest."""
    return {annotator or "": decision_of(task) for annotator, task in latest_by_annotator(versions).items()}


class _PairTally:
    """One annotator pair's figures: kappa, percent agreement and span F1 over the items both answered."""

    def __init__(self) -> None:
        self.kappa = KappaTally()
        self.common_spans = 0
        self.spans = 0

    def add(self, a: Decision, b: Decision) -> None:
        self.kappa.add(a, b)
        self.common_spans += len(a[1] & b[1])
        self.spans += len(a[1]) + len(b[1])


class _FiguresTally:
    """Method, value, percent agreement and per-pair figures over items given as ``{annotator: decision}``."""

    def __init__(self) -> None:
        self.items = 0
        self.unanimous = 0
        self.alpha = AlphaTally()
        self.pairs: dict[tuple[str, str], _PairTally] = defaultdict(_PairTally)

    def add(self, decisions: Mapping[str, Decision]) -> None:
        self.items += 1
        self.unanimous += len(set(decisions.values())) == 1
        self.alpha.add(list(decisions.values()))
        for a, b in combinations(sorted(decisions), 2):
            self.pairs[(a, b)].add(decisions[a], decisions[b])

    def figures(self) -> dict[str, Any]:
        annotators = sorted({name for pair in self.pairs for name in pair})
        pairwise: dict[str, dict[str, Any]] = {}
        for a, b in combinations(annotators, 2):
            pair = self.pairs.get((a, b))
            if pair is not None:
                pairwise[f"{a}|{b}"] = {
                    "value": pair.kappa.kappa(),
                    "n_items": pair.kappa.n,
                    "percent_agreement": pair.kappa.agreed / pair.kappa.n,
                    "span_f1": _f1(pair.common_spans, pair.spans),
                }
        if len(annotators) < 2:
            method, value = None, None
        elif len(annotators) == 2:
            method, value = "cohen_kappa", pairwise[f"{annotators[0]}|{annotators[1]}"]["value"]
        else:
            method, value = "krippendorff_alpha_nominal", self.alpha.alpha()
        return {
            "method": method,
            "value": value,
            "n_items": self.items,
            "n_annotators": len(annotators),
            "observed_agreement": self.unanimous / self.items if self.items else None,
            "pairwise": pairwise,
        }


def _f1(common: int, total: int) -> float | None:
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


class AgreementTally:
    """Agreement of a dataset's annotators, counted item by item as :func:`annotation_agreement` reports it:
    items may come in any order, each once, and only the counts are kept (never the answers)."""

    def __init__(self) -> None:
        self._overall = _FiguresTally()
        self._per_label: dict[str, _FiguresTally] = defaultdict(_FiguresTally)

    def add_item(self, key: ItemKey, versions: Iterable[Mapping[str, Any]]) -> None:
        """One item's answers (every annotator's, in stream order); counted when two or more answered."""
        decisions = item_decisions(versions)
        if len(decisions) < 2:
            return
        self._overall.add(decisions)
        for label in _labels_in(key[1], decisions):
            self._per_label[label].add({name: _restricted(d, label) for name, d in decisions.items()})

    def agreement(self) -> Agreement:
        overall = self._overall.figures()
        per_label = {}
        for label in sorted(self._per_label):
            figures = self._per_label[label].figures()
            per_label[label] = {k: figures[k] for k in ("method", "value", "n_items", "observed_agreement")}
        common = sum(pair.common_spans for pair in self._overall.pairs.values())
        total = sum(pair.spans for pair in self._overall.pairs.values())
        return Agreement(
            method=overall["method"],
            value=overall["value"],
            n_items=overall["n_items"],
            n_annotators=overall["n_annotators"],
            observed_agreement=overall["observed_agreement"],
            pairwise=overall["pairwise"],
            span_f1=_f1(common, total),
            per_label=per_label,
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
    by_item: dict[ItemKey, list[Mapping[str, Any]]] = defaultdict(list)
    for task in tasks:
        by_item[item_key(task)].append(task)
    tally = AgreementTally()
    for key, versions in by_item.items():
        tally.add_item(key, versions)
    return tally.agreement()
