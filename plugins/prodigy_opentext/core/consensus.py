"""Merge several annotators' answers into one final example per item, and collect what needs a reviewer.

An item (one question about one input, see :func:`~prodigy_opentext.core.agreement.item_key`) becomes final
when its annotators agree and nothing about it asks for a second look. Otherwise it is a dispute, carrying the
reasons and every annotator's version, for senior reviewers (OpenText escalation). An adjudicated version
(``_adjudicated: true`` in the stream, or any task of an adjudication dataset passed in) is the reviewers'
decision: it becomes the final example and resolves the item's dispute.

Items are merged one at a time (:class:`ItemMerger`), so a batch read back one input at a time is merged
holding one input's answers at a time; each answer needs only its :class:`MergeFields`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, TypedDict

import msgspec

from prodigy_opentext.core.agreement import ItemKey, decision_of, item_key, latest_by_annotator
from prodigy_opentext.core.payloads import ConsensusCounts
from prodigy_opentext.core.records import annotator_of
from prodigy_opentext.exceptions import ConsensusError

CONFLICT = "conflict"
IGNORED = "ignored"
FLAGGED = "flagged"
LOW_SCORE = "low_score"


@dataclass
class Dispute:
    """An item the annotators did not settle, with why and what each of them answered."""

    input_hash: Any
    label: Any
    reasons: list[str]
    versions: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "input_hash": self.input_hash,
            "label": self.label,
            "reasons": self.reasons,
            "annotators": [annotator_of(version) for version in self.versions],
            "versions": self.versions,
        }


@dataclass
class ConsensusResult:
    """Final examples (one per item, unique task hashes) and the disputes still open."""

    merged: list[dict[str, Any]] = field(default_factory=list)
    disputes: list[Dispute] = field(default_factory=list)
    resolved: int = 0

    def counts(self) -> ConsensusCounts:
        return ConsensusCounts(merged=len(self.merged), disputes=len(self.disputes), resolved=self.resolved)


class MergeFields(TypedDict, total=False):
    """The fields of an answer that merging, agreement and the review figures read: an answer decoded into
    only these (:func:`merge_fields`) merges, and counts, as the whole answer does. A rule that reads
    another field must be given it here."""

    _input_hash: Any
    _task_hash: Any
    _timestamp: Any
    _annotator_id: Any
    _session_id: Any
    _adjudicated: Any
    _consensus: Any
    answer: Any
    label: Any
    spans: Any
    accept: Any
    options: Any
    flagged: Any
    meta: Any
    text: Any


_decode_merge_fields = msgspec.json.Decoder(MergeFields).decode


def merge_fields(line: bytes) -> dict[str, Any] | None:
    """A stored answer's :class:`MergeFields` (the token lists that make up most of an NER answer are
    skipped, not decoded); ``None`` where msgspec refuses the line (NaN, a lone surrogate), which the whole
    decoder then reads. msgspec checks the skipped fields' syntax, not their numbers' range: a number
    beyond a float's (``1e400``, which JSON allows and Prodigy never writes) stays as stored."""
    try:
        return _decode_merge_fields(line)  # type: ignore[return-value]
    except msgspec.MsgspecError:
        return None


_encode_json = msgspec.json.Encoder().encode


def final_line(answer_line: bytes, final: Mapping[str, Any]) -> bytes:
    """The JSON line of a final example that is an answer unchanged but for its ``_consensus``: that
    answer's stored line with ``_consensus`` added last, as the merged dict holds it (the answer has no
    ``_consensus`` of its own), without decoding the rest."""
    body = answer_line.rstrip()
    if not body.endswith(b"}"):
        raise ConsensusError(f"not a JSON object line: {answer_line[:60]!r}")
    body = body[:-1].rstrip()
    separator = b"" if body.endswith(b"{") else b","
    return body + separator + b'"_consensus":' + _encode_json(final["_consensus"]) + b"}"


def dispute_reasons(versions: Iterable[Mapping[str, Any]], *, min_score: float | None = None) -> list[str]:
    """Why an item needs a reviewer: annotators disagree, someone ignored or flagged it, or a low score."""
    versions = list(versions)
    reasons = []
    if len({decision_of(task) for task in versions if task.get("answer") != "ignore"}) > 1:
        reasons.append(CONFLICT)
    if any(task.get("answer") == "ignore" for task in versions):
        reasons.append(IGNORED)
    if any(task.get("flagged") for task in versions):
        reasons.append(FLAGGED)
    scores = [score for score in map(_score, versions) if score is not None]
    if min_score is not None and any(score < min_score for score in scores):
        reasons.append(LOW_SCORE)
    return reasons


def _score(task: Mapping[str, Any]) -> float | None:
    meta = task.get("meta")
    score = meta.get("score") if isinstance(meta, Mapping) else None
    return float(score) if isinstance(score, int | float) and not isinstance(score, bool) else None


def _is_adjudicated(task: Mapping[str, Any]) -> bool:
    return task.get("_adjudicated") is True


def _ordered(versions: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Versions in a stable order (time, then annotator) so reruns pick and list the same ones."""
    return sorted(versions, key=lambda t: (t.get("_timestamp") or 0, annotator_of(t) or ""))


@dataclass
class ItemOutcome:
    """One merged item: its final example or its dispute, and the reasons an adjudication settled."""

    final: dict[str, Any] | None
    dispute: Dispute | None
    resolved_reasons: list[str]
    source: Mapping[str, Any] | None = None
    """The version (as it was passed in) the final example is a copy of."""


def merge_item(
    key: ItemKey, versions: Iterable[Mapping[str, Any]], *, min_score: float | None = None
) -> ItemOutcome:
    """Merge one item's versions into its final example or its dispute.

    The final example is the latest adjudicated version, else the earliest of unanimous versions, with
    ``_consensus`` saying how it was reached (``unanimous`` or ``adjudicated``) and by which annotators.
    """
    versions = list(versions)
    adjudications = [task for task in versions if _is_adjudicated(task)]
    answers = _ordered(latest_by_annotator(task for task in versions if not _is_adjudicated(task)).values())
    reasons = dispute_reasons(answers, min_score=min_score)
    annotators = [annotator_of(task) for task in answers]
    if adjudications:
        source = _ordered(adjudications)[-1]
        final = {**source, "_consensus": {"method": "adjudicated", "annotators": annotators}}
        return ItemOutcome(final=final, dispute=None, resolved_reasons=reasons, source=source)
    if reasons:
        versions_given = [dict(task) for task in answers]
        dispute = Dispute(input_hash=key[0], label=key[1], reasons=reasons, versions=versions_given)
        return ItemOutcome(final=None, dispute=dispute, resolved_reasons=[])
    source = answers[0]
    final = {**source, "_consensus": {"method": "unanimous", "annotators": annotators}}
    return ItemOutcome(final=final, dispute=None, resolved_reasons=[], source=source)


def item_groups(tasks: Iterable[Mapping[str, Any]]) -> Iterator[tuple[ItemKey, list[Mapping[str, Any]]]]:
    """Each item's answers, in stream order within the item, items in the order they first appear."""
    groups: dict[ItemKey, list[Mapping[str, Any]]] = defaultdict(list)
    for task in tasks:
        groups[item_key(task)].append(task)
    yield from groups.items()


class ItemMerger:
    """Merges items one at a time, each with the reviewers' adjudications of it, and checks what holds
    across items (no task hash is the final example of two), keeping counts rather than examples."""

    def __init__(
        self, adjudications: Iterable[Mapping[str, Any]] = (), *, min_score: float | None = None
    ) -> None:
        self.min_score = min_score
        self._adjudicated: dict[ItemKey, list[dict[str, Any]]] = defaultdict(list)
        for task in adjudications:
            self._adjudicated[item_key(task)].append({**task, "_adjudicated": True})
        self._task_hashes: dict[Any, Any] = {}
        """Each final example's task hash and its item's input hash (not the key: a million of them)."""
        self.merged = self.disputes = self.resolved = 0

    def merge(self, key: ItemKey, versions: Sequence[Mapping[str, Any]]) -> ItemOutcome:
        """The outcome of one item of the stream (each item once)."""
        return self._settle(key, [*versions, *self._adjudicated.pop(key, [])])

    def adjudicates(self, key: ItemKey) -> bool:
        """Whether the reviewers decided this item (its outcome then comes from their decision)."""
        return key in self._adjudicated

    def rest(self) -> Iterator[ItemOutcome]:
        """The outcomes of the adjudicated items the stream did not hold, once it is done."""
        while self._adjudicated:
            key = next(iter(self._adjudicated))
            yield self._settle(key, self._adjudicated.pop(key))

    def counts(self) -> ConsensusCounts:
        return ConsensusCounts(merged=self.merged, disputes=self.disputes, resolved=self.resolved)

    def _settle(self, key: ItemKey, versions: Sequence[Mapping[str, Any]]) -> ItemOutcome:
        outcome = merge_item(key, versions, min_score=self.min_score)
        if outcome.dispute is not None:
            self.disputes += 1
            return outcome
        final = outcome.final
        if final is None:
            raise ConsensusError(
                f"item input_hash {key[0]} (label {key[1]!r}) has neither a final example nor a dispute"
            )
        self.resolved += bool(outcome.resolved_reasons)
        task_hash = final.get("_task_hash")
        if task_hash in self._task_hashes:
            raise ConsensusError(
                f"task_hash {task_hash} is the final example of two items: "
                f"input_hash {self._task_hashes[task_hash]} and input_hash {key[0]} (label {key[1]!r})"
            )
        self._task_hashes[task_hash] = key[0]
        self.merged += 1
        return outcome


def build_consensus(
    tasks: Iterable[Mapping[str, Any]],
    *,
    adjudications: Iterable[Mapping[str, Any]] = (),
    min_score: float | None = None,
) -> ConsensusResult:
    """Merge all annotators' answers held in memory; ``adjudications`` are reviewers' decisions from another
    dataset. ``min_score``: items whose ``meta.score`` is below it are disputed as low confidence."""
    merger = ItemMerger(adjudications, min_score=min_score)
    result = ConsensusResult()
    outcomes = (merger.merge(key, versions) for key, versions in item_groups(tasks))
    for outcome in chain(outcomes, merger.rest()):
        if outcome.dispute is not None:
            result.disputes.append(outcome.dispute)
        elif outcome.final is not None:
            result.merged.append(outcome.final)
    result.resolved = merger.resolved
    return result
