"""What several flows share: a batch exported with its annotators' answers merged, the audit log, assets."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow.sdk import Asset

from prodigy_opentext.audit import VariableAnchor
from prodigy_opentext.core.agreement import ItemKey, item_key
from prodigy_opentext.core.audit import AppendResult, AuditLog
from prodigy_opentext.core.batches import version_last_example_id
from prodigy_opentext.core.consensus import (
    Dispute,
    ItemMerger,
    ItemOutcome,
    final_line,
    merge_fields,
    merge_item,
)
from prodigy_opentext.core.escalation import adjudication_dataset, adjudications_in
from prodigy_opentext.core.export import JsonlSink, LinesByInput
from prodigy_opentext.core.paths import plain_name
from prodigy_opentext.core.payloads import ExportManifest, QAFigures
from prodigy_opentext.core.qa import correction_of
from prodigy_opentext.core.records import decode_record, sessions_of, standard_json_line
from prodigy_opentext.core.regulated import frozen_reason
from prodigy_opentext.core.release import reviewed_sha256
from prodigy_opentext.core.review_report import ReviewFigures, ReviewTally
from prodigy_opentext.exceptions import (
    AuditAnchorMismatch,
    ConsensusError,
    DatasetNotFoundError,
    UnsafeName,
)
from prodigy_opentext.failures import AuditLogTampered, DatasetRefused, NameRefused, RowsQuarantined
from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook
from prodigy_opentext.hooks.prodigy import ProdigyHook

log = logging.getLogger(__name__)

ANNOTATION_RELEASES = Asset(name="annotation_releases", uri="file:///annotation-releases")
"""Updated by every release written; its event's ``extra`` is the release (dataset, version, manifest)."""
AUDIT_ACTOR = "airflow"
"""Who the audit log names for what the flows record."""


def checked_name(value: str, what: str) -> str:
    """:func:`~prodigy_opentext.core.paths.plain_name` for a task: a bad name fails it without retries."""
    try:
        return plain_name(value, what)
    except UnsafeName as unsafe:
        raise NameRefused(str(unsafe)) from None


def governable_dataset(
    dataset: str,
    prodigy_conn_id: str = ProdigyHook.default_conn_name,
    opentext_conn_id: str = OpenTextWorkflowHook.default_conn_name,
) -> dict[str, Any]:
    """The meta of a dataset a flow can govern, checked before any reviewer is asked.

    What retrying cannot change fails without retries, saying what to set and where: a name that cannot
    be a folder, a connection not defined (Prodigy's or OpenText's), a dataset Prodigy does not know, no
    approved label scheme, a regulated dataset frozen because its access was revoked.
    """
    checked_name(dataset, "dataset")
    _ = OpenTextWorkflowHook(opentext_conn_id).settings  # the connection, read and checked; no call made
    try:
        meta = ProdigyHook(prodigy_conn_id).get_meta(dataset)
    except DatasetNotFoundError as unknown:
        raise DatasetRefused(f"{unknown}: check the name, or create it in Prodigy first") from None
    if (frozen := frozen_reason(meta)) is not None:
        raise DatasetRefused(f"dataset {dataset!r}: {frozen}; it cannot be reviewed or released")
    if not meta.get("labels"):
        raise DatasetRefused(
            f'dataset {dataset!r} has no approved label scheme: set "labels" in its meta (the annotation '
            f'request sets it; by hand: ProdigyHook().set_meta({dataset!r}, {{"labels": ["LABEL", ...]}}))'
        )
    return meta


def whole_export(export: ExportManifest) -> ExportManifest:
    """``export`` when every stored row was a valid Prodigy example; else :class:`RowsQuarantined`
    naming the quarantine file: reviewers and releases see a batch whole or not at all."""
    if export["quarantined"]:
        raise RowsQuarantined(export, 0.0)
    return export


@dataclass
class ExportedAnswers:
    """A batch exported to ``answers.jsonl`` and held whole: every annotator's answers, and the corrections
    QA rework brought to its items."""

    answers: Path
    export: ExportManifest
    tasks: list[dict[str, Any]]
    corrections: list[dict[str, Any]]
    """The annotators' answers from QA rework, each as its annotator's newest answer to the item."""


def adjudications_of(
    dataset: str, prodigy_conn_id: str = ProdigyHook.default_conn_name
) -> list[dict[str, Any]]:
    """The reviewers' decisions on the dataset's disputes: its adjudication dataset's examples (none yet
    when that dataset does not exist)."""
    hook = ProdigyHook(prodigy_conn_id)
    try:
        return list(hook.iter_examples(adjudication_dataset(dataset, hook.get_meta(dataset))))
    except DatasetNotFoundError:
        return []


def rework_corrections(
    dataset: str,
    prodigy_conn_id: str = ProdigyHook.default_conn_name,
    *,
    until_id: int,
    before_round: int | None = None,
) -> list[dict[str, Any]]:
    """The corrections QA rework brought to the dataset up to example ``until_id``: the answers in the
    rework datasets of this version and the earlier ones (a later version's rework is not part of this one;
    with ``before_round``, only this version's rounds before it), each as the answer of the annotator whose
    answer it replaces (:func:`~prodigy_opentext.core.qa.correction_of`); an answer given by another
    session than the task was for counts for nobody and is named in the log."""
    hook = ProdigyHook(prodigy_conn_id)
    found: list[dict[str, Any]] = []
    for entry in hook.list_datasets():
        name, meta = str(entry["name"]), entry.get("meta") or {}
        if not name.startswith(f"{dataset}_rework_") or meta.get("rework_of") != dataset:
            continue
        try:
            version_id = version_last_example_id(str(meta.get("version")))
        except ValueError:
            continue
        later_round = before_round is not None and int(meta.get("rework_round") or 0) >= before_round
        if version_id > until_id or (version_id == until_id and later_round):
            continue
        rows = list(hook.iter_examples(name))
        found += [c for c in (correction_of(row, name) for row in rows) if c is not None]
        strays = [
            r.get("_session_id")
            for r in rows
            if correction_of(r, name) is None and r.get("answer") != "ignore"
        ]
        if strays:
            log.warning(
                "%s: %d answer(s) not from the session their task was for, not counted: %s",
                name,
                len(strays),
                sorted(set(map(str, strays)))[:10],
            )
    return found


def corrections_of(
    dataset: str,
    tasks: Iterable[Mapping[str, Any]],
    prodigy_conn_id: str = ProdigyHook.default_conn_name,
    *,
    until_id: int,
    before_round: int | None = None,
) -> list[dict[str, Any]]:
    """The :func:`rework_corrections` of the items of ``tasks``."""
    items = {item_key(task) for task in tasks}
    candidates = rework_corrections(dataset, prodigy_conn_id, until_id=until_id, before_round=before_round)
    return [correction for correction in candidates if item_key(correction) in items]


def export_answers(
    dataset: str,
    until_id: int,
    directory: Path,
    prodigy_conn_id: str = ProdigyHook.default_conn_name,
    *,
    before_round: int | None = None,
) -> ExportedAnswers:
    """Export ``dataset`` up to example ``until_id`` into ``directory`` with the corrections QA rework
    brought to its items (``before_round``: only those of the QA rounds before it, so a round sees the batch
    as it was when it began)."""
    directory.mkdir(parents=True, exist_ok=True)
    answers = directory / "answers.jsonl"
    export = ProdigyHook(prodigy_conn_id).export_jsonl(dataset, answers, until_id=until_id)
    with open(answers, "rb") as lines:
        tasks = [decode_record(line, row=n) for n, line in enumerate(lines, start=1) if line.strip()]
    corrections = corrections_of(
        dataset, tasks, prodigy_conn_id, until_id=until_id, before_round=before_round
    )
    return ExportedAnswers(answers, export, tasks, corrections)


@dataclass(frozen=True)
class StreamedItem:
    """One item of a streamed batch: its final example (a dict, or its JSON line where it is an answer as
    stored plus its ``_consensus``: :func:`~prodigy_opentext.core.consensus.final_line`) or its open
    dispute, and where its first answer is in ``answers.jsonl`` (``None`` for an item only the reviewers'
    decisions hold): items sorted by it come in the order the whole batch merges them."""

    final: dict[str, Any] | bytes | None
    dispute: Dispute | None
    position: int | None


class StreamedBatch:
    """A batch exported to ``answers.jsonl``, then merged one input at a time as it is read back from that
    file in input-hash order (:meth:`items`); what it keeps is what the review and the release need of it:
    counts, figures, the QA corrections and the reviewers' decisions it used."""

    def __init__(
        self,
        dataset: str,
        until_id: int,
        directory: Path,
        prodigy_conn_id: str = ProdigyHook.default_conn_name,
        *,
        min_score: float | None = None,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dataset = dataset
        hook = ProdigyHook(prodigy_conn_id)
        self.answers = directory / "answers.jsonl"
        self._by_input = LinesByInput()
        sink = JsonlSink(self.answers, by_input=self._by_input)
        self.export = hook.export(dataset, sink, until_id=until_id)
        """The export's manifest; rows it quarantined are not in the batch (:func:`whole_export`)."""
        self._candidates = rework_corrections(dataset, prodigy_conn_id, until_id=until_id)
        self.adjudications = adjudications_of(dataset, prodigy_conn_id)
        self.merger = ItemMerger(self.adjudications, min_score=min_score)
        self.tally = ReviewTally()
        self.corrections: list[dict[str, Any]] = []
        """The corrections of the batch's items (once :meth:`items` is done)."""
        self.sessions: set[str] = set()
        self._adjudicated: list[dict[str, Any]] = []
        self._merged = False

    def items(self) -> Iterator[StreamedItem]:
        """Every item's final example or open dispute, in input-hash order, then the adjudicated items the
        batch does not hold.

        Each answer is decoded into only what the rules read (:func:`~prodigy_opentext.core.consensus.
        merge_fields`). An item whose final example is one of its answers unchanged is written from that
        answer's line; one with QA corrections or reviewers' decisions, one that stays disputed and one
        with a line msgspec refuses are decoded whole and merged as they are.
        """
        if self._merged:
            raise ConsensusError(
                f"{self.dataset}: a streamed batch is merged once; build another to merge again"
            )
        self._merged = True
        pending: dict[ItemKey, list[dict[str, Any]]] = defaultdict(list)
        for correction in self._candidates:
            pending[item_key(correction)].append(correction)
        reworked: set[ItemKey] = set()
        for _, places, lines in self._by_input.read(self.answers):
            fields = [merge_fields(line) for line in lines]
            by_item: dict[ItemKey, list[int]] = defaultdict(list)
            for index, task in enumerate(fields):
                by_item[item_key(task if task is not None else _whole(lines[index]))].append(index)
            for key, indexes in by_item.items():
                corrections = pending.pop(key, [])
                if corrections:
                    reworked.add(key)
                item_lines, item_fields = [lines[i] for i in indexes], [fields[i] for i in indexes]
                yield self._item(key, item_lines, item_fields, corrections, places[indexes[0]])
        self.corrections = [c for c in self._candidates if item_key(c) in reworked]
        for outcome in self.merger.rest():
            yield self._counted(outcome, outcome.final, None)

    def settle(self) -> None:
        """Merge the whole batch for its figures and counts alone, keeping none of its items."""
        for _ in self.items():
            pass

    def open_disputes(self) -> list[Dispute]:
        """Merge the whole batch for its figures and counts, keeping only its open disputes, in the order
        the batch first holds them (the order an in-memory
        :func:`~prodigy_opentext.core.consensus.build_consensus` lists them)."""
        found = [(item.position, item.dispute) for item in self.items() if item.dispute is not None]
        return [dispute for _, dispute in sorted(found, key=lambda pair: pair[0] or 0)]

    def _item(
        self,
        key: ItemKey,
        lines: list[bytes],
        fields: list[dict[str, Any] | None],
        corrections: list[dict[str, Any]],
        position: int,
    ) -> StreamedItem:
        """One item, from its answers' lines and their :func:`merge_fields` (``None``: refused)."""
        plain = not corrections and not self.merger.adjudicates(key)
        answers: list[dict[str, Any]] = []
        for task in fields:
            if task is None or "_consensus" in task or "_adjudicated" in task:
                plain = False
                break
            answers.append(task)
        if not plain:
            answers = [_whole(line) for line in lines]
        self.tally.add_answers(key, answers)
        self.sessions.update(sessions_of(answers))
        outcome = self.merger.merge(key, [*answers, *corrections])
        if plain and outcome.dispute is not None:  # the reviewers see every annotator's whole answer
            whole = merge_item(key, [_whole(line) for line in lines], min_score=self.merger.min_score)
            if whole.dispute is None or whole.dispute.reasons != outcome.dispute.reasons:
                raise ConsensusError(
                    f"item input_hash {key[0]} (label {key[1]!r}) merges otherwise whole than by its merge "
                    "fields: a rule reads a field MergeFields does not hold"
                )
            outcome = ItemOutcome(final=None, dispute=whole.dispute, resolved_reasons=[])
        if plain and outcome.final is not None:
            source = next(i for i, task in enumerate(answers) if task is outcome.source)
            return self._counted(outcome, final_line(lines[source], outcome.final), position)
        return self._counted(outcome, outcome.final, position)

    def _counted(
        self, outcome: ItemOutcome, final: dict[str, Any] | bytes | None, position: int | None
    ) -> StreamedItem:
        if outcome.final is not None:
            self.tally.add_final(outcome.final)
            if outcome.final.get("_adjudicated"):
                self._adjudicated.append(outcome.final)
        elif outcome.dispute is not None:
            self.tally.add_dispute(outcome.dispute.as_dict())
        final = final if outcome.final is not None else None
        return StreamedItem(final=final, dispute=outcome.dispute, position=position)

    @property
    def adjudicated(self) -> list[dict[str, Any]]:
        """The reviewers' decisions behind the final examples (for the manifest)."""
        return adjudications_in(self._adjudicated)

    @property
    def sha256(self) -> str:
        """What reviewers approve and the release ships
        (:func:`~prodigy_opentext.core.release.reviewed_sha256`)."""
        return reviewed_sha256(self.export["sha256"], self.adjudications, self.corrections)

    def review_figures(self, version: str, *, regulated: bool, audit_path: Path) -> ReviewFigures:
        """What the batch's review report shows, with the QA rounds the audit log holds for it."""
        return self.tally.figures(
            self.dataset,
            version,
            regulated=regulated,
            counts={kind: self.export[kind] for kind in ("by_answer", "by_label", "by_annotator")},
            adjudications=self.adjudicated,
            qa_rounds=recorded_qa_rounds(audit_path, self.dataset, version),
        )


def _whole(line: bytes) -> dict[str, Any]:
    """A line of ``answers.jsonl`` decoded whole (the export checked it)."""
    return decode_record(line, row="answers.jsonl")


class JsonlWriter:
    """Writes rows as standard JSON lines (:func:`~prodigy_opentext.core.records.standard_json_line`,
    keys sorted unless ``sort_keys`` is false): NaN and Infinity become null, the first ``named`` such rows
    named in the log and the rest counted in ``nulled``. A row given as bytes is already a JSON line (a
    stored answer's own, from :func:`~prodigy_opentext.core.consensus.final_line`), written as it is."""

    def __init__(self, path: Path, named: int = 20, *, sort_keys: bool = True) -> None:
        self.path, self.named, self.sort_keys = path, named, sort_keys
        self.lines = self.nulled = 0
        self._out = open(path, "wb")  # noqa: SIM115 (closed by close(), or by the with block)

    def write(self, row: Mapping[str, Any] | bytes) -> None:
        self.lines += 1
        if isinstance(row, bytes):
            self._out.write(row + b"\n")
            return
        line, changed = standard_json_line(row, sort_keys=self.sort_keys)
        if changed:
            self.nulled += 1
            if self.nulled <= self.named:
                log.warning(
                    "%s line %d: %s was NaN or Infinity, written as null", self.path.name, self.lines, changed
                )
        self._out.write(line + b"\n")

    def close(self) -> None:
        self._out.close()
        if self.nulled > self.named:
            log.warning("%s: %d rows in all had NaN or Infinity written as null", self.path.name, self.nulled)

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def recorded_qa_rounds(audit_path: Path, dataset: str, version: str) -> list[QAFigures]:
    """The figures of the QA rounds the audit log holds for ``dataset@version``, in round order."""
    subject = f"{dataset}@{version}"
    rounds = {
        entry["details"]["figures"]["round"]: entry["details"]["figures"]
        for entry in AuditLog(audit_path).entries()
        if entry.get("action") == "qa_round_recorded" and entry.get("subject") == subject
    }
    return [rounds[number] for number in sorted(rounds)]


def record_in_audit_log(
    audit_path: Path, action: str, subject: str, details: dict[str, Any], *, event_key: str
) -> AppendResult:
    """Append what a flow did to the audit log, once per ``event_key`` however often the task runs, and
    anchor its head in Airflow's metadata; a log that lost anchored entries fails the task without retries."""
    try:
        return AuditLog(audit_path).append(
            AUDIT_ACTOR, action, subject, details, event_key=event_key, anchor=VariableAnchor(audit_path)
        )
    except AuditAnchorMismatch as mismatch:
        raise AuditLogTampered(
            f"{mismatch}: restore the log (python -m prodigy_opentext.audit verify {audit_path} names what "
            "is missing)"
        ) from None
