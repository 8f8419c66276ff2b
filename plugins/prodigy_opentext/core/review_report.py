"""What reviewers and consumers read about a batch: the review report and the release's dataset card.

The review report is attached to the batch approval and the release sign-off processes, so reviewers open
it from their OpenText task: counts per label and answer, agreement (overall, per label, per annotator
pair), annotator progress, sample items with their spans drawn, disputes and how they were decided, QA
rounds, and for a release its validation. The dataset card is written beside a release's ``manifest.json``
from the manifest alone (what, source, who labeled, approvals, validation, regulated flag, licence), so the
same manifest always gives the same card, and the manifest can record the card's sha256.

Items of a regulated dataset are never shown: the report travels into OpenText, where the access grant of
flow 5 does not reach.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypedDict

from prodigy_opentext.core.agreement import AgreementTally, ItemKey
from prodigy_opentext.core.escalation import item_id
from prodigy_opentext.core.payloads import Agreement, QAFigures
from prodigy_opentext.core.records import AnnotationProgress, annotator_of
from prodigy_opentext.core.report_html import (
    Html,
    bar_chart,
    facts,
    marked_text,
    number,
    page,
    percent,
    section,
    table,
)

REVIEW_REPORT_NAME = "review_report.html"
DATASET_CARD_NAME = "dataset_card.html"
SAMPLE_ITEMS = 5
METHOD_NAMES = {
    "cohen_kappa": "Cohen's kappa",
    "krippendorff_alpha_nominal": "Krippendorff's alpha (nominal)",
    None: "no overlap between annotators",
}


class AnnotatorProgress(TypedDict):
    answers: int
    by_answer: dict[str, int]
    first: str | None
    last: str | None


class ReviewFigures(TypedDict):
    """Everything a review report shows, computed once from the exported batch."""

    dataset: str
    version: str
    regulated: bool
    answers: int
    items: int
    counts: dict[str, dict[str, int]]
    agreement: Agreement
    progress: dict[str, AnnotatorProgress]
    samples: list[dict[str, Any]]
    disputes: list[dict[str, Any]]
    adjudications: list[dict[str, Any]]
    qa_rounds: list[QAFigures]


def _when(timestamp: Any) -> str | None:
    """Prodigy's ``_timestamp`` (seconds since the epoch) as a UTC time people read."""
    if not isinstance(timestamp, int | float) or isinstance(timestamp, bool):
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


class ProgressTally:
    """Answers per annotator (by answer), with their first and last answer's time, one answer at a time."""

    def __init__(self) -> None:
        self._counted = AnnotationProgress(per_input=False)
        self._spans: dict[str, list[float]] = {}

    def add(self, task: Mapping[str, Any]) -> None:
        self._counted.add(task)
        annotator, stamp = annotator_of(task), task.get("_timestamp")
        if annotator and isinstance(stamp, int | float):
            seen = self._spans.setdefault(annotator, [stamp, stamp])
            seen[0], seen[1] = min(seen[0], stamp), max(seen[1], stamp)

    @property
    def answers(self) -> int:
        return self._counted.total

    def progress(self) -> dict[str, AnnotatorProgress]:
        progress = {}
        for name, figures in self._counted.as_dict()["annotators"].items():
            first, last = self._spans.get(name, [None, None])
            progress[name] = AnnotatorProgress(
                answers=figures["answers"],
                by_answer=figures["by_answer"],
                first=_when(first),
                last=_when(last),
            )
        return progress


class SampleTally:
    """A few final examples to look at, those with spans first (they show the most), in stream order: the
    first ``limit`` with spans and the first ``limit`` without are all that is kept."""

    def __init__(self, limit: int = SAMPLE_ITEMS) -> None:
        self.limit = limit
        self._with_spans: list[dict[str, Any]] = []
        self._without: list[dict[str, Any]] = []

    def add(self, task: Mapping[str, Any]) -> None:
        if not isinstance(task.get("text"), str):
            return
        kept = self._with_spans if task.get("spans") else self._without
        if len(kept) < self.limit:
            kept.append(
                {
                    "text": task["text"],
                    "spans": [dict(span) for span in task.get("spans") or () if isinstance(span, Mapping)],
                    "label": task.get("label"),
                    "answer": task.get("answer"),
                    "accept": list(task.get("accept") or ()),
                }
            )

    def samples(self) -> list[dict[str, Any]]:
        return [*self._with_spans, *self._without][: self.limit]


def dispute_summary(dispute: Mapping[str, Any]) -> dict[str, Any]:
    """What the report lists of an open dispute (:meth:`~prodigy_opentext.core.consensus.Dispute.as_dict`)."""
    return {
        "item": item_id(dispute["input_hash"], dispute["label"]),
        "reasons": list(dispute["reasons"]),
        "annotators": [a for a in dispute["annotators"] if a],
    }


class ReviewTally:
    """The figures of one batch counted item by item as the consensus merges it: an item's answers, then
    its outcome (final example or open dispute); only counts, a few samples and the disputes' summaries
    are kept."""

    def __init__(self) -> None:
        self.agreement = AgreementTally()
        self.progress = ProgressTally()
        self.samples = SampleTally()
        self.items = 0
        self.disputes: list[dict[str, Any]] = []

    def add_answers(self, key: ItemKey, answers: Sequence[Mapping[str, Any]]) -> None:
        """One item's answers as the annotators gave them (not the QA corrections or adjudications)."""
        self.agreement.add_item(key, answers)
        for task in answers:
            self.progress.add(task)

    def add_final(self, final: Mapping[str, Any]) -> None:
        self.items += 1
        self.samples.add(final)

    def add_dispute(self, dispute: Mapping[str, Any]) -> None:
        """An open dispute (:meth:`~prodigy_opentext.core.consensus.Dispute.as_dict`)."""
        self.disputes.append(dispute_summary(dispute))

    def figures(
        self,
        dataset: str,
        version: str,
        *,
        regulated: bool,
        counts: Mapping[str, Mapping[str, int]],
        adjudications: Iterable[Mapping[str, Any]],
        qa_rounds: Iterable[QAFigures] = (),
    ) -> ReviewFigures:
        """``counts``: the export's ``by_answer`` / ``by_label`` / ``by_annotator``."""
        return ReviewFigures(
            dataset=dataset,
            version=version,
            regulated=regulated,
            answers=self.progress.answers,
            items=self.items,
            counts={kind: dict(values) for kind, values in counts.items()},
            agreement=self.agreement.agreement(),
            progress=self.progress.progress(),
            samples=[] if regulated else self.samples.samples(),
            disputes=list(self.disputes),
            adjudications=[dict(a) for a in adjudications],
            qa_rounds=list(qa_rounds),
        )


# --- the pages -------------------------------------------------------------------------------------------


def _agreement_section(agreement: Mapping[str, Any]) -> str:
    overall = {
        METHOD_NAMES.get(agreement.get("method"), str(agreement.get("method"))): number(
            agreement.get("value")
        ),
        "percent agreement": percent(agreement.get("observed_agreement")),
        "items two or more annotators answered": number(agreement.get("n_items")),
        "annotators on those items": number(agreement.get("n_annotators")),
    }
    if agreement.get("span_f1") is not None:
        overall["span F1 (exact spans, all pairs)"] = number(agreement["span_f1"])
    pairwise = agreement.get("pairwise") or {}
    per_label = agreement.get("per_label") or {}
    pair_rows = [
        [
            pair.replace("|", " / "),
            number(f.get("value")),
            percent(f.get("percent_agreement")),
            number(f.get("span_f1")),
            number(f.get("n_items")),
        ]
        for pair, f in sorted(pairwise.items())
    ]
    label_rows = [
        [label, number(f.get("value")), percent(f.get("observed_agreement")), number(f.get("n_items"))]
        for label, f in sorted(per_label.items())
    ]
    return section(
        "Agreement",
        facts(overall),
        bar_chart(
            "Percent agreement per annotator pair",
            {pair.replace("|", " / "): f.get("percent_agreement") for pair, f in sorted(pairwise.items())},
            scale_max=1.0,
            formatter=percent,
            chart_id="agreement-per-pair",
        ),
        table(
            ["annotators", "Cohen's kappa", "percent agreement", "span F1", "items"],
            pair_rows,
            numeric=[1, 2, 3, 4],
        ),
        bar_chart(
            "Percent agreement per label",
            {label: f.get("observed_agreement") for label, f in sorted(per_label.items())},
            scale_max=1.0,
            formatter=percent,
            chart_id="agreement-per-label",
        ),
        table(["label", "agreement", "percent agreement", "items"], label_rows, numeric=[1, 2, 3]),
    )


def _counts_section(by_label: Mapping[str, int], by_answer: Mapping[str, int]) -> str:
    return section(
        "Answers",
        bar_chart("Answers per label", dict(sorted(by_label.items())), chart_id="answers-per-label"),
        bar_chart("Answers per answer", dict(sorted(by_answer.items())), chart_id="answers-per-answer"),
    )


def _sample_section(figures: ReviewFigures) -> str:
    if figures["regulated"]:
        return section(
            "Sample items",
            "<p>Regulated content: items are shown only in Prodigy, to the annotators the access grant "
            "names.</p>",
        )
    items = []
    for sample in figures["samples"]:
        marks = marked_text(sample["text"], sample["spans"])
        about = ", ".join(
            str(part)
            for part in (sample.get("label"), ", ".join(map(str, sample["accept"])) or None, sample["answer"])
            if part
        )
        items.append(f'<div class="item">{marks}<br><small class="muted">{about}</small></div>')
    return section("Sample items", *(items or ["<p>No item with text.</p>"]))


def _disputes_section(figures: ReviewFigures) -> str:
    decided = [
        [
            a.get("item"),
            a.get("decision"),
            ", ".join(a.get("versions_from") or ()) or "",
            a.get("reviewer"),
            a.get("decided_at"),
            a.get("comment") or "",
        ]
        for a in figures["adjudications"]
    ]
    open_rows = [
        [d["item"], ", ".join(d["reasons"]), ", ".join(d["annotators"])] for d in figures["disputes"]
    ]
    return section(
        "Disputes",
        f"<p>{len(figures['disputes'])} open, {len(decided)} decided by reviewers.</p>",
        table(["item", "decision", "version of", "reviewer", "decided", "comment"], decided)
        if decided
        else "",
        table(["open item", "why", "annotators"], open_rows) if open_rows else "",
    )


def _qa_section(rounds: Sequence[QAFigures]) -> str:
    if not rounds:
        return section("QA rounds", "<p>No QA round for this version.</p>")
    rows = [
        [
            number(r["round"]),
            number(r["sampled"]),
            number(r["failed"]),
            percent(r["error_rate"]),
            percent(r["upper_bound"]),
            percent(r["max_error_rate"]),
            "passed" if r["passed"] else "failed",
        ]
        for r in rounds
    ]
    return section(
        "QA rounds",
        table(
            ["round", "sampled", "failed", "error rate", "upper bound", "allowed", "result"],
            rows,
            numeric=[0, 1, 2, 3, 4, 5],
        ),
    )


def _validation_section(validation: Mapping[str, Any] | None) -> str:
    if not validation:
        return ""
    statistics = validation.get("statistics") or {}
    rows = [
        [
            e.get("frame"),
            e.get("rule"),
            e.get("column") or "",
            "passed" if e.get("success") else "failed",
            number(e.get("unexpected_count")),
        ]
        for e in validation.get("expectations") or ()
        if isinstance(e, Mapping)
    ]
    return section(
        "Validation",
        facts(
            {
                "Great Expectations suite": "passed" if validation.get("success") else "failed",
                "expectations evaluated": number(statistics.get("evaluated")),
                "failed": number(statistics.get("failed", 0)),
            }
        ),
        table(["table", "rule", "column", "result", "unexpected rows"], rows, numeric=[4]),
    )


def review_report_html(figures: ReviewFigures, validation: Mapping[str, Any] | None = None) -> str:
    """The review report of one batch (with its validation, for a release sign-off)."""
    progress_rows = [
        [
            name,
            number(p["answers"]),
            ", ".join(f"{answer} {count}" for answer, count in p["by_answer"].items()),
            p["first"],
            p["last"],
        ]
        for name, p in figures["progress"].items()
    ]
    key = {
        "answers": number(figures["answers"]),
        "final examples": number(figures["items"]),
        "open disputes": number(len(figures["disputes"])),
        "annotators": number(len(figures["progress"])),
    }
    if figures["regulated"]:
        key["regulated"] = "yes"
    return page(
        f"Review report: {figures['dataset']} {figures['version']}",
        [
            facts(key),
            _counts_section(figures["counts"].get("by_label", {}), figures["counts"].get("by_answer", {})),
            _agreement_section(figures["agreement"]),
            section(
                "Annotators",
                bar_chart(
                    "Answers per annotator",
                    {name: p["answers"] for name, p in figures["progress"].items()},
                    chart_id="answers-per-annotator",
                ),
                table(
                    ["annotator", "answers", "by answer", "first answer", "last answer"],
                    progress_rows,
                    numeric=[1],
                ),
            ),
            _sample_section(figures),
            _disputes_section(figures),
            _qa_section(figures["qa_rounds"]),
            _validation_section(validation),
        ],
        subtitle="Prepared by Airflow from the Prodigy dataset for the reviewers of this batch.",
    )


def _approval_rows(approvals: Iterable[Mapping[str, Any]]) -> list[list[Any]]:
    return [
        [
            a.get("kind"),
            a.get("approver"),
            a.get("outcome"),
            a.get("decided_at"),
            a.get("process_instance_id"),
        ]
        for a in approvals
    ]


def licence_of(meta: Mapping[str, Any]) -> str | None:
    """The licence a dataset's meta states (``licence``, or ``license`` as many tools spell it)."""
    licence = meta.get("licence") or meta.get("license")
    return str(licence) if licence else None


def dataset_card_html(manifest: Mapping[str, Any]) -> str:
    """The dataset card of a release, from its manifest (its content fields: not the run id or time)."""
    licence = manifest.get("licence")
    counts, source = manifest.get("counts") or {}, manifest.get("source") or {}
    validation = manifest.get("validation") or {}
    by_annotator = counts.get("by_annotator") or {}
    return page(
        f"Dataset card: {manifest['dataset']} {manifest['version']}",
        [
            section(
                "What",
                facts(
                    {
                        "examples": number(counts.get("examples")),
                        "labels": number(len(manifest.get("label_distribution") or {})),
                        "regulated": "yes" if manifest.get("regulated") else "no",
                        "validation": "passed" if validation.get("success") else "failed",
                    }
                ),
                table(
                    ["", ""],
                    [
                        ["dataset", manifest["dataset"]],
                        ["version", manifest["version"]],
                        ["source", f"Prodigy dataset {source.get('dataset')}"],
                        ["licence", licence or "not stated (set it in the dataset's meta as licence)"],
                        ["files", ", ".join(sorted(manifest.get("files") or {}))],
                    ],
                ),
            ),
            _counts_section(manifest.get("label_distribution") or {}, counts.get("by_answer") or {}),
            section(
                "Who labeled",
                bar_chart(
                    "Answers per annotator",
                    dict(sorted(by_annotator.items())),
                    chart_id="answers-per-annotator",
                ),
                Html(f"<p>Sessions: {', '.join(source.get('sessions') or ()) or 'none'}.</p>"),
            ),
            _agreement_section(manifest.get("agreement") or {}),
            section(
                "Approvals",
                table(
                    ["step", "by", "outcome", "decided", "OpenText process"],
                    _approval_rows(manifest.get("approvals") or ()),
                ),
                f"<p>{len(manifest.get('adjudications') or ())} disputed items decided by reviewers, "
                f"{len(manifest.get('reworked') or ())} answers reworked after QA.</p>",
            ),
            _validation_section(validation),
        ],
        subtitle="Written with the release; manifest.json records this card's sha256.",
    )
