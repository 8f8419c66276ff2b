"""The release's staging streamed from Prodigy one input at a time against the batch held whole: the same
final examples, disputes, figures and checksums, on real Prodigy databases (SQLite and PostgreSQL) holding
the real samples answered by three annotators in a shuffled order, with QA corrections and adjudications.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from prodigy_opentext.core.agreement import item_key
from prodigy_opentext.core.consensus import ConsensusResult, build_consensus
from prodigy_opentext.core.escalation import adjudications_in
from prodigy_opentext.core.qa import reworks_in
from prodigy_opentext.core.release import reviewed_sha256
from prodigy_opentext.exceptions import ConsensusError
from prodigy_opentext.flows._shared import (
    ExportedAnswers,
    StreamedBatch,
    adjudications_of,
    export_answers,
    recorded_qa_rounds,
)
from prodigy_opentext.flows.release import stage_release_data
from prodigy_opentext.hooks.prodigy import ProdigyHook
from tests.core.test_consensus import three_annotators
from tests.core.test_review_report import review_figures
from tests.hooks import prodigy_support
from tests.hooks.prodigy_support import SAMPLE_NAMES, sample_rows

prodigy_conn = prodigy_support.prodigy_conn
ROWS = 90


def annotated(dataset: str, name: str) -> list[dict[str, Any]]:
    """A sample's first rows answered by three annotators of ``dataset`` (disagreeing, ignoring, flagging),
    in a shuffled order."""
    answers = three_annotators(sample_rows(name, ROWS))
    for answer in answers:
        session = f"{dataset}-{answer['_annotator_id'].removeprefix('ds-')}"
        answer["_annotator_id"] = answer["_session_id"] = session
    return answers


def with_rework_and_decisions(dataset: str, answers: list[dict[str, Any]], version: str) -> None:
    """A QA rework round that redid some of bob's answers, and reviewers' decisions on some items (one of
    them an item the batch does not hold)."""
    hook = ProdigyHook()
    rework = f"{dataset}_rework_1"
    hook.add_dataset(rework, {"rework_of": dataset, "version": version, "rework_round": 1})
    redone = [a for a in answers if a["_annotator_id"] == f"{dataset}-bob"][::6]
    hook.add_examples(
        rework,
        [
            {
                **answer,
                "answer": "accept",
                "_timestamp": answer["_timestamp"] + 10_000,
                "_session_id": f"{rework}-bob",
                "_annotator_id": f"{rework}-bob",
                "meta": {"rework_of": f"{dataset}-bob", "annotator": "bob", "rework_round": 1},
            }
            for answer in redone
        ],
    )
    decided = [a for a in answers if a["_annotator_id"] == f"{dataset}-ann"][::9]
    outside = {**decided[0], "_input_hash": 424242, "_task_hash": 434343}
    hook.add_examples(
        f"{dataset}_adjudicated",
        [
            {
                **answer,
                "answer": "accept",
                "_annotator_id": f"{dataset}-senior",
                "_session_id": f"{dataset}-senior",
                "meta": {"adjudication": {"reviewer": "senior@example.com", "decision": "version"}},
            }
            for answer in [*decided, outside]
        ],
    )


@dataclass
class WholeBatch:
    """The batch held whole and merged by the in-memory consensus: what the streamed staging must equal."""

    exported: ExportedAnswers
    adjudications: list[dict[str, Any]]
    consensus: ConsensusResult

    @property
    def sha256(self) -> str:
        return reviewed_sha256(self.exported.export["sha256"], self.adjudications, self.exported.corrections)


def whole_batch(dataset: str, until: int, directory: Path) -> WholeBatch:
    exported = export_answers(dataset, until, directory)
    adjudications = adjudications_of(dataset)
    consensus = build_consensus([*exported.tasks, *exported.corrections], adjudications=adjudications)
    return WholeBatch(exported, adjudications, consensus)


def by_item(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Final examples or disputes (``input_hash`` and ``label``) in one order, whatever the stream's."""
    return sorted(
        rows,
        key=lambda row: repr(
            item_key(row)
            if "_input_hash" in row
            else item_key({"_input_hash": row["input_hash"], "label": row["label"]})
        ),
    )


def decoded(final: dict[str, Any] | bytes) -> dict[str, Any]:
    return json.loads(final) if isinstance(final, bytes) else final


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_streamed_staging_gives_what_the_whole_batch_gives(prodigy_conn, tmp_path, name) -> None:
    dataset = name.replace("_", "")
    hook = ProdigyHook()
    hook.add_dataset(dataset, {"labels": ["BRAND"]})
    answers = annotated(dataset, name)
    hook.add_examples(dataset, answers[: len(answers) // 2])
    hook.add_examples("interleaved", sample_rows(name, 5))  # another dataset's examples between the ids
    hook.add_examples(dataset, answers[len(answers) // 2 :])
    until = hook.last_example_id(dataset)
    assert until is not None
    with_rework_and_decisions(dataset, answers, f"b{until}")
    hook.add_examples(dataset, [{**answers[0], "_annotator_id": "late", "_session_id": "late"}])

    whole = whole_batch(dataset, until, tmp_path / "whole")
    streamed = StreamedBatch(dataset, until, tmp_path / "streamed")
    items = list(streamed.items())
    finals = [decoded(item.final) for item in items if item.final is not None]
    disputes = [item.dispute.as_dict() for item in items if item.dispute is not None]
    assert any(isinstance(item.final, bytes) for item in items), "some finals come from their lines"
    assert any(isinstance(item.final, dict) for item in items), "and some are merged whole"
    with pytest.raises(ConsensusError, match="merged once"):
        next(streamed.items())

    assert (tmp_path / "streamed" / "answers.jsonl").read_bytes() == whole.exported.answers.read_bytes()
    assert {**streamed.export, "path": None} == {**whole.exported.export, "path": None}
    assert by_item(finals) == by_item(whole.consensus.merged)
    assert by_item(disputes) == by_item([d.as_dict() for d in whole.consensus.disputes])
    assert streamed.merger.counts() == whole.consensus.counts()
    assert streamed.corrections == whole.exported.corrections and streamed.corrections, "QA rework applied"
    assert streamed.adjudicated == adjudications_in(whole.consensus.merged) and streamed.adjudicated
    assert streamed.sha256 == whole.sha256 != whole.exported.export["sha256"]
    assert sorted(streamed.sessions) == sorted({a["_annotator_id"] for a in answers})
    audit = tmp_path / "audit.jsonl"
    kept = streamed.review_figures(f"b{until}", regulated=False, audit_path=audit)
    exported = whole.exported
    held = review_figures(
        dataset,
        f"b{until}",
        regulated=False,
        tasks=exported.tasks,
        counts={kind: exported.export[kind] for kind in ("by_answer", "by_label", "by_annotator")},
        merged=whole.consensus.merged,
        disputes=[dispute.as_dict() for dispute in whole.consensus.disputes],
        adjudications=adjudications_in(whole.consensus.merged),
        qa_rounds=recorded_qa_rounds(audit, dataset, f"b{until}"),
    )
    for figures in (kept, held):  # which samples come first follows the stream's order
        figures["disputes"].sort(key=lambda d: d["item"])
        assert len(figures.pop("samples")) == 5  # type: ignore[misc]
    assert kept == held
    agreement = kept["agreement"]
    assert agreement["n_annotators"] == 3 and agreement["pairwise"] and agreement["per_label"]
    assert whole.consensus.disputes and whole.consensus.resolved, "the batch has every outcome"
    in_batch_order = StreamedBatch(dataset, until, tmp_path / "again").open_disputes()
    assert [d.as_dict() for d in in_batch_order] == [d.as_dict() for d in whole.consensus.disputes]


def test_the_release_files_hold_the_streamed_outcomes(prodigy_conn, tmp_path) -> None:
    dataset = "brands"
    hook = ProdigyHook()
    emails = {name: f"{name}@example.com" for name in ("ann", "bob", "cyd")}
    hook.add_dataset(
        dataset, {"labels": ["FASHION_BRAND"], "licence": "CC BY 4.0", "annotator_emails": emails}
    )
    answers = annotated(dataset, "ner_fashion_brands")
    hook.add_examples(dataset, answers)
    until = hook.last_example_id(dataset)
    assert until is not None
    with_rework_and_decisions(dataset, answers, f"b{until}")
    target = {
        "dataset": dataset,
        "version": f"b{until}",
        "last_example_id": until,
        "regulated": False,
        "label_scheme": ["FASHION_BRAND"],
    }

    staged = stage_release_data(target, tmp_path / "staging", "manual__1", tmp_path / "audit.jsonl")
    whole = whole_batch(dataset, until, tmp_path / "whole")
    assert by_item(read_lines(Path(staged["annotations"]))) == by_item(
        json.loads(json.dumps(whole.consensus.merged))
    )
    assert by_item(read_lines(Path(staged["disputes"]))) == by_item(
        json.loads(json.dumps([d.as_dict() for d in whole.consensus.disputes]))
    )
    assert staged["consensus"] == whole.consensus.counts()
    assert staged["reviewed_sha256"] == whole.sha256
    assert staged["reworked"] == reworks_in(whole.exported.corrections)
    assert staged["adjudications"] == adjudications_in(whole.consensus.merged)
    assert staged["sessions"] == sorted({a["_annotator_id"] for a in answers})
    figures = json.loads(Path(staged["review_figures"]).read_text())
    assert figures["agreement"] == json.loads(json.dumps(staged["agreement"]))
    assert figures["answers"] == len(answers) and figures["items"] == staged["consensus"]["merged"]
