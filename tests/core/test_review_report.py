"""The review report and the dataset card: their charts hold the numbers of the batch and the manifest."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from prodigy_opentext.core.agreement import annotation_agreement
from prodigy_opentext.core.consensus import build_consensus, item_groups
from prodigy_opentext.core.payloads import QAFigures
from prodigy_opentext.core.records import RecordSummary
from prodigy_opentext.core.release import write_release
from prodigy_opentext.core.review_report import (
    ReviewFigures,
    ReviewTally,
    dataset_card_html,
    review_report_html,
)
from tests.fixtures.samples import SAMPLES_DIR as SAMPLES
from tests.pages import chart_values, svg_count


@pytest.fixture(scope="module")
def three_annotators() -> list[dict]:
    """The first 30 items of the real NER sample answered by three annotators: bob misses the last span of
    every third item, carol answers as alice does."""
    rows = [json.loads(line) for line in (SAMPLES / "ner_fashion_brands.jsonl").read_text().splitlines()[:30]]
    answers = []
    for i, row in enumerate(rows):
        for name in ("alice", "bob", "carol"):
            answer = copy.deepcopy(row)
            answer.update(
                _annotator_id=f"brands-{name}", _session_id=f"brands-{name}", _timestamp=1_760_000_000 + i
            )
            if name == "bob" and i % 3 == 0 and answer.get("spans"):
                answer["spans"] = answer["spans"][:-1]
            answers.append(answer)
    return answers


def review_figures(
    dataset: str,
    version: str,
    *,
    regulated: bool,
    tasks: Iterable[Mapping[str, Any]],
    counts: Mapping[str, Mapping[str, int]],
    merged: Iterable[Mapping[str, Any]],
    disputes: Iterable[Mapping[str, Any]],
    adjudications: Iterable[Mapping[str, Any]],
    qa_rounds: Iterable[QAFigures] = (),
) -> ReviewFigures:
    """The figures of a batch held whole, by the tally the flows feed as they stream: ``tasks`` are every
    annotator's answers, ``merged`` the final examples, ``disputes`` the open ones."""
    tally = ReviewTally()
    for key, answers in item_groups(tasks):
        tally.add_answers(key, answers)
    for final in merged:
        tally.add_final(final)
    for dispute in disputes:
        tally.add_dispute(dispute)
    return tally.figures(
        dataset, version, regulated=regulated, counts=counts, adjudications=adjudications, qa_rounds=qa_rounds
    )


def figures_of(tasks: list[dict], *, regulated: bool = False):
    summary = RecordSummary()
    for task in tasks:
        summary.add(task)
    counts = summary.as_dict()
    consensus = build_consensus(tasks)
    return review_figures(
        "brands",
        "b90",
        regulated=regulated,
        tasks=tasks,
        counts={k: counts[k] for k in ("by_answer", "by_label", "by_annotator")},
        merged=consensus.merged,
        disputes=[d.as_dict() for d in consensus.disputes],
        adjudications=[],
    )


def test_the_review_reports_charts_hold_the_batchs_figures(three_annotators: list[dict]) -> None:
    figures = figures_of(three_annotators)
    html = review_report_html(figures)
    charts = chart_values(html)
    assert svg_count(html) == len(charts) == 5
    assert charts["answers-per-label"] == {k: float(v) for k, v in figures["counts"]["by_label"].items()}
    assert charts["answers-per-annotator"] == {"brands-alice": 30.0, "brands-bob": 30.0, "brands-carol": 30.0}
    pairs = figures["agreement"]["pairwise"]
    assert charts["agreement-per-pair"] == {
        pair.replace("|", " / "): pytest.approx(f["percent_agreement"]) for pair, f in pairs.items()
    }
    assert charts["agreement-per-pair"]["brands-alice / brands-carol"] == 1.0
    assert charts["agreement-per-pair"]["brands-alice / brands-bob"] < 1.0
    assert figures["agreement"]["method"] == "krippendorff_alpha_nominal"
    assert figures["disputes"], "bob's missing spans are disputes"
    assert "<mark>" in html, "sample items show their spans"
    assert "<script" not in html and "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_a_regulated_batchs_report_shows_no_item(three_annotators: list[dict]) -> None:
    html = review_report_html(figures_of(three_annotators, regulated=True))
    texts = {task["text"] for task in three_annotators}
    assert not [text for text in texts if text[:40] in html]
    assert "Regulated content" in html


def test_the_dataset_card_holds_the_manifests_numbers_and_is_reproducible(
    three_annotators: list[dict], tmp_path: Path
) -> None:
    data = tmp_path / "annotations.jsonl"
    data.write_text("".join(json.dumps(task) + "\n" for task in build_consensus(three_annotators).merged))

    def release(run_id: str):
        return write_release(
            tmp_path / "root",
            "brands",
            "b90",
            {"annotations.jsonl": data},
            validation={"success": True, "statistics": {"evaluated": 14, "failed": 0}, "expectations": []},
            approvals=[{"kind": "batch_approval", "approver": "sme@example.com", "outcome": "approved"}],
            sessions=["brands-alice", "brands-bob", "brands-carol"],
            source_dataset="brands",
            agreement=annotation_agreement(three_annotators),
            licence="CC BY 4.0",
            dataset_card=("dataset_card.html", dataset_card_html),
            run_id=run_id,
        )

    first = release("manual__1")
    card = (first.path / "dataset_card.html").read_bytes()
    assert first.manifest["dataset_card"]["sha256"] == hashlib.sha256(card).hexdigest()
    assert first.manifest["files"]["dataset_card.html"]["sha256"] == hashlib.sha256(card).hexdigest()
    charts = chart_values(card.decode())
    assert charts["answers-per-label"] == {
        k: float(v) for k, v in first.manifest["label_distribution"].items()
    }
    assert charts["answers-per-answer"] == {
        k: float(v) for k, v in first.manifest["counts"]["by_answer"].items()
    }
    assert "CC BY 4.0" in card.decode() and "sme@example.com" in card.decode()
    assert release("manual__2").already_released, "an equal rerun renders an equal card"
