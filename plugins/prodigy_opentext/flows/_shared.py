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
    ConsensusResult,
    ItemMerger,
    ItemOutcome,
    build_consensus,
    item_groups,
)
from prodigy_opentext.core.escalation import adjudication_dataset, adjudications_in
from prodigy_opentext.core.paths import plain_name
from prodigy_opentext.core.payloads import ExportManifest, QAFigures
from prodigy_opentext.core.qa import correction_of
from prodigy_opentext.core.records import decode_record, sessions_of, standard_json_line
from prodigy_opentext.core.regulated import frozen_reason
from prodigy_opentext.core.release import reviewed_sha256
from prodigy_opentext.core.review_report import ReviewFigures, ReviewTally, review_figures
from prodigy_opentext.exceptions import (
    AuditAnchorMismatch,
    DatasetNotFoundError,
    ProdigyDatabaseError,
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
class MergedBatch:
    """A batch exported to ``answers.jsonl`` and every annotator's answers merged into final examples."""

    answers: Path
    export: ExportManifest
    tasks: list[dict[str, Any]]
    consensus: ConsensusResult
    corrections: list[dict[str, Any]]
    """The annotators' answers from QA rework, each as its annotator's newest answer to the item."""
    adjudications: list[dict[str, Any]]
    """The reviewers' decisions on the dataset's disputes."""

    @property
    def sha256(self) -> str:
        """What reviewers approve and the release ships
        (:func:`~prodigy_opentext.core.release.reviewed_sha256`)."""
        return reviewed_sha256(self.export["sha256"], self.adjudications, self.corrections)

    def review_figures(
        self, dataset: str, version: str, *, regulated: bool, audit_path: Path
    ) -> ReviewFigures:
        """What the batch's review report shows, with the QA rounds the audit log holds for it."""
        return review_figures(
            dataset,
            version,
            regulated=regulated,
            tasks=self.tasks,
            counts={
                "by_answer": self.export["by_answer"],
                "by_label": self.export["by_label"],
                "by_annotator": self.export["by_annotator"],
            },
            merged=self.consensus.merged,
            disputes=[dispute.as_dict() for dispute in self.consensus.disputes],
            adjudications=adjudications_in(self.consensus.merged),
            qa_rounds=recorded_qa_rounds(audit_path, dataset, version),
        )


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


def export_and_merge(
    dataset: str,
    until_id: int,
    directory: Path,
    prodigy_conn_id: str = ProdigyHook.default_conn_name,
    *,
    min_score: float | None = None,
    before_round: int | None = None,
) -> MergedBatch:
    """Export ``dataset`` up to example ``until_id`` into ``directory`` and build its consensus, with
    the corrections from QA rework replacing the answers they redo and the reviewers' adjudications
    settling the items they decided (``min_score``: disputes scores below; ``before_round``: only the
    corrections of the QA rounds before it, so a round sees the batch as it was when it began)."""
    directory.mkdir(parents=True, exist_ok=True)
    answers = directory / "answers.jsonl"
    export = ProdigyHook(prodigy_conn_id).export_jsonl(dataset, answers, until_id=until_id)
    with open(answers, "rb") as lines:
        tasks = [decode_record(line, row=n) for n, line in enumerate(lines, start=1) if line.strip()]
    corrections = corrections_of(
        dataset, tasks, prodigy_conn_id, until_id=until_id, before_round=before_round
    )
    adjudications = adjudications_of(dataset, prodigy_conn_id)
    consensus = build_consensus([*tasks, *corrections], adjudications=adjudications, min_score=min_score)
    return MergedBatch(answers, export, tasks, consensus, corrections, adjudications)


class StreamedBatch:
    """A batch exported to ``answers.jsonl``, then merged as it streams from Prodigy in input-hash order,
    one input's answers in memory at a time (:meth:`outcomes`); what it keeps is what the review and the
    release need of it: counts, figures, the QA corrections and the reviewers' decisions it used."""

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
        self.dataset, self.until_id = dataset, until_id
        self._hook = ProdigyHook(prodigy_conn_id)
        self.answers = directory / "answers.jsonl"
        self.export = whole_export(self._hook.export_jsonl(dataset, self.answers, until_id=until_id))
        self._candidates = rework_corrections(dataset, prodigy_conn_id, until_id=until_id)
        self.adjudications = adjudications_of(dataset, prodigy_conn_id)
        self.merger = ItemMerger(self.adjudications, min_score=min_score)
        self.tally = ReviewTally()
        self.corrections: list[dict[str, Any]] = []
        """The corrections of the batch's items (once :meth:`outcomes` is done)."""
        self.sessions: set[str] = set()
        self._adjudicated: list[dict[str, Any]] = []

    def outcomes(self) -> Iterator[ItemOutcome]:
        """Every item's final example or open dispute, in input-hash order, then the adjudicated items the
        batch does not hold; an answer streamed that the export did not write fails (the dataset changed
        between the two reads)."""
        pending: dict[ItemKey, list[dict[str, Any]]] = defaultdict(list)
        for correction in self._candidates:
            pending[item_key(correction)].append(correction)
        reworked: set[ItemKey] = set()
        rows = (
            decode_record(content, row=example_id, where="example id")
            for batch in self._hook.iter_row_batches_by_input(self.dataset, until_id=self.until_id)
            for example_id, content in batch
        )
        read = 0
        for key, answers in item_groups(rows, presorted=True):
            read += len(answers)
            self.tally.add_answers(key, answers)
            self.sessions.update(sessions_of(answers))
            corrections = pending.pop(key, [])
            if corrections:
                reworked.add(key)
            yield self._counted(self.merger.merge(key, [*answers, *corrections]))
        if read != self.export["rows"]:
            raise ProdigyDatabaseError(
                f"dataset {self.dataset!r} changed while it was staged: {read} answers up to example "
                f"{self.until_id} streamed, {self.export['rows']} exported; stage it again"
            )
        self.corrections = [c for c in self._candidates if item_key(c) in reworked]
        for outcome in self.merger.rest():
            yield self._counted(outcome)

    def _counted(self, outcome: ItemOutcome) -> ItemOutcome:
        if outcome.final is not None:
            self.tally.add_final(outcome.final)
            if outcome.final.get("_adjudicated"):
                self._adjudicated.append(outcome.final)
        elif outcome.dispute is not None:
            self.tally.add_dispute(outcome.dispute.as_dict())
        return outcome

    @property
    def adjudicated(self) -> list[dict[str, Any]]:
        """The reviewers' decisions behind the final examples (for the manifest)."""
        return adjudications_in(self._adjudicated)

    @property
    def sha256(self) -> str:
        """What reviewers approve and the release ships (as :attr:`MergedBatch.sha256`)."""
        return reviewed_sha256(self.export["sha256"], self.adjudications, self.corrections)

    def review_figures(self, version: str, *, regulated: bool, audit_path: Path) -> ReviewFigures:
        """What the batch's review report shows (as :meth:`MergedBatch.review_figures`)."""
        return self.tally.figures(
            self.dataset,
            version,
            regulated=regulated,
            counts={kind: self.export[kind] for kind in ("by_answer", "by_label", "by_annotator")},
            adjudications=self.adjudicated,
            qa_rounds=recorded_qa_rounds(audit_path, self.dataset, version),
        )


class JsonlWriter:
    """Writes rows as standard JSON lines (:func:`~prodigy_opentext.core.records.standard_json_line`):
    NaN and Infinity become null, the first ``named`` such rows named in the log and the rest counted in
    ``nulled``."""

    def __init__(self, path: Path, named: int = 20) -> None:
        self.path, self.named = path, named
        self.lines = self.nulled = 0
        self._out = open(path, "wb")  # noqa: SIM115 (closed by close(), or by the with block)

    def write(self, row: Mapping[str, Any]) -> None:
        self.lines += 1
        line, changed = standard_json_line(row)
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
