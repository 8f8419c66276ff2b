"""The annotation suites run by Great Expectations, alone and inside a DAG run (``dag.test()``)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG, task

from prodigy_opentext.core.consensus import build_consensus
from prodigy_opentext.core.validation import (
    AnnotationRules,
    flatten_export,
    flatten_records,
    load_suites,
)
from prodigy_opentext.exceptions import AnnotationValidationError
from prodigy_opentext.operators.annotation_validation import (
    XCOM_KEY,
    AnnotationValidationOperator,
    run_annotation_suites,
)
from tests.fixtures.airflow_db import task_states

SCHEMES = {
    "ner_fashion_brands.jsonl": ("FASHION_BRAND",),
    "ner_manual_food.jsonl": ("INGRED",),
    "textcat_docs_issues.jsonl": ("DOCUMENTATION",),
}
TEXT = "Acme makes shoes for runners"  # 28 characters
TOKENS = [
    {"text": w, "start": TEXT.index(w), "end": TEXT.index(w) + len(w), "id": i}
    for i, w in enumerate(TEXT.split())
]


def example(i: int, spans: list[dict], **fields: Any) -> dict[str, Any]:
    return {
        "text": TEXT,
        "tokens": TOKENS,
        "spans": spans,
        "answer": "accept",
        "_input_hash": i,
        "_task_hash": -100 - i,
        "_annotator_id": "shoes-ann",
        **fields,
    }


def brand(
    label: str = "BRAND", start: int = 0, end: int = 4, token_start: int = 0, token_end: int = 0
) -> dict:
    return {"start": start, "end": end, "token_start": token_start, "token_end": token_end, "label": label}


def validate(tasks: list[dict], rules: AnnotationRules, disputes: list[dict] = ()) -> dict[str, Any]:
    frames = flatten_records(enumerate(tasks, start=1), rules, enumerate(disputes, start=1)).frames()
    return run_annotation_suites(frames, load_suites(), rules)


def failed(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{e['frame']}.{e['rule']}": e for e in summary["expectations"] if not e["success"]}


def test_an_out_of_scheme_label_and_a_span_beyond_its_text_are_both_named() -> None:
    rules = AnnotationRules(("BRAND",))
    tasks = [
        example(1, [brand()]),
        example(2, [brand("FOO")], _task_hash=-123),
        example(3, [brand(start=40, end=55, token_start=4, token_end=4)]),
    ]
    summary = validate(tasks, rules)
    assert summary["success"] is False
    assert set(failed(summary)) == {
        "labels.label_in_scheme",
        "spans.span_in_text",
        "spans.span_token_aligned",
    }
    with pytest.raises(AnnotationValidationError) as error:
        raise AnnotationValidationError(summary)
    message = str(error.value)
    assert "label 'FOO' not in scheme (task_hash -123, row 2)" in message
    assert "span 40-55 beyond text of length 28 (task_hash -103, row 3)" in message
    label_rule = failed(summary)["labels.label_in_scheme"]
    assert (label_rule["unexpected_count"], label_rule["element_count"]) == (1, 3)
    assert label_rule["sample_rows"] == [{"row": 2, "_task_hash": -123, "label": "FOO"}]
    json.dumps(summary)


def test_every_other_rule_names_its_rows() -> None:
    rules = AnnotationRules(("BRAND", "PRODUCT"), min_examples_per_label=2, max_ignore_rate=0.25)
    tasks = [
        example(1, [brand()]),
        example(2, [brand()], _task_hash=-101),  # same task hash as row 1
        example(3, [brand(start=1)]),  # starts inside a token
        example(4, [brand()], answer="skip"),
        example(5, [{"start": 0, "end": 4, "token_start": 0, "token_end": 0}]),  # no label
        example(6, [], answer="ignore"),
        example(7, [], answer="ignore"),
        {"_task_hash": -200, "answer": "accept"},  # no input, no input hash
    ]
    tasks[2]["answer"] = None
    disputes = [{"input_hash": 9, "label": None, "reasons": ["conflict", "flagged"]}]
    summary = validate(tasks, rules, disputes)
    broken = failed(summary)
    assert set(broken) == {
        "examples.task_hash_unique",
        "examples.answer_present",
        "examples.answer_allowed",
        "examples.input_present",
        "examples.input_hash_present",
        "examples.max_ignore_rate",
        "spans.span_token_aligned",
        "spans.span_label_present",
        "label_counts.min_examples_per_label",
        "disputes.no_open_disputes",
    }
    assert broken["examples.task_hash_unique"]["samples"] == [
        "task_hash -101 appears more than once (row 1)",
        "task_hash -101 appears more than once (row 2)",
    ]
    assert broken["examples.answer_allowed"]["samples"] == [
        "answer 'skip' is not accept, reject or ignore (task_hash -104, row 4)"
    ]
    assert broken["examples.answer_present"]["samples"] == ["answer missing (task_hash -103, row 3)"]
    assert broken["examples.input_present"]["samples"] == [
        "no input (text, image, html or input) (task_hash -200, row 8)"
    ]
    assert broken["examples.max_ignore_rate"]["samples"] == ["ignore rate 28.57% above the maximum of 25.00%"]
    assert broken["spans.span_token_aligned"]["samples"] == [
        "span 1-4 not aligned to token boundaries (task_hash -103, row 3)"
    ]
    assert broken["spans.span_label_present"]["samples"] == ["span 0-4 has no label (task_hash -105, row 5)"]
    assert broken["label_counts.min_examples_per_label"]["samples"] == [
        "label 'PRODUCT' has 0 examples, fewer than 2"
    ]
    assert broken["disputes.no_open_disputes"]["samples"] == [
        "unresolved dispute on input_hash 9 (label None): conflict, flagged"
    ]


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_the_real_prodigy_exports_pass_their_own_scheme(prodigy_samples_dir: Path, name: str) -> None:
    rules = AnnotationRules(SCHEMES[name], min_examples_per_label=50, max_ignore_rate=0.0)
    flattened = flatten_export(prodigy_samples_dir / name, rules)
    summary = run_annotation_suites(flattened.frames(), load_suites(), rules)
    assert failed(summary) == {}
    assert summary["rows"]["examples"] == len((prodigy_samples_dir / name).read_text().splitlines())
    assert summary["statistics"]["evaluated"] == 14


def test_a_sample_fails_another_scheme(prodigy_samples_dir: Path) -> None:
    rules = AnnotationRules(("BRAND",))
    summary = run_annotation_suites(
        flatten_export(prodigy_samples_dir / "ner_manual_food.jsonl", rules).frames(), load_suites(), rules
    )
    broken = failed(summary)
    assert set(broken) == {"labels.label_in_scheme", "label_counts.min_examples_per_label"}
    assert broken["labels.label_in_scheme"]["samples"][0].startswith(
        "label 'INGRED' not in scheme (task_hash "
    )


def validation_dag(export: Path, record: Path, **options: Any) -> DAG:
    """validate (templated export path and labels) >> record (writes the pushed summary, even on failure)."""
    dag_id = f"validate_{uuid.uuid4().hex[:8]}"
    with DAG(dag_id, schedule=None, start_date=datetime(2025, 1, 1), params={"export": str(export)}) as dag:
        validate_task = AnnotationValidationOperator(
            task_id="validate", export_path="{{ params.export }}", **options
        )

        @task(trigger_rule="all_done")
        def record_summary(ti=None) -> None:
            record.write_text(json.dumps(ti.xcom_pull(task_ids="validate", key=XCOM_KEY)))

        validate_task >> record_summary()
    return dag


def test_the_operator_passes_a_merged_export_in_a_dag_run(run_dag, prodigy_samples_dir, tmp_path) -> None:
    sample = [
        json.loads(line) for line in (prodigy_samples_dir / "ner_manual_food.jsonl").read_text().splitlines()
    ]
    second_annotator = [{**task, "_session_id": "food-bob"} for task in sample]
    merged = build_consensus(sample + second_annotator)
    export = tmp_path / "merged.jsonl"
    export.write_text("".join(json.dumps(task) + "\n" for task in merged.merged))
    record = tmp_path / "summary.json"
    dag = validation_dag(
        export, record, label_scheme=["{{ 'INGRED' }}"], min_examples_per_label="100", max_ignore_rate="0.05"
    )
    run = run_dag(dag)
    assert task_states(run) == {"validate": "success", "record_summary": "success"}
    summary = json.loads(record.read_text())
    assert summary["success"] is True
    assert summary["parameters"]["label_scheme"] == ["INGRED"]
    assert summary["parameters"]["min_examples_per_label"] == 100
    assert summary["rows"]["examples"] == len(sample)


def test_the_operator_fails_the_task_and_still_pushes_the_summary(run_dag, tmp_path) -> None:
    export = tmp_path / "batch.jsonl"
    tasks = [example(1, [brand()]), example(2, [brand("FOO")]), example(3, [brand(start=40, end=55)])]
    export.write_text("".join(json.dumps(task) + "\n" for task in tasks))
    disputes = tmp_path / "disputes.jsonl"
    disputes.write_text(json.dumps({"input_hash": 4, "label": None, "reasons": ["conflict"]}) + "\n")
    record = tmp_path / "summary.json"
    dag = validation_dag(
        export,
        record,
        label_scheme=["BRAND"],
        disputes_path=str(disputes),
        retries=2,
        retry_delay=timedelta(seconds=1),
    )
    run = run_dag(dag)
    assert task_states(run) == {"validate": "failed", "record_summary": "success"}
    assert run.get_task_instance("validate").try_number == 1, "the same data would fail again: no retry"
    summary = json.loads(record.read_text())
    assert summary["success"] is False
    assert set(failed(summary)) == {
        "labels.label_in_scheme",
        "spans.span_in_text",
        "spans.span_token_aligned",
        "disputes.no_open_disputes",
    }
    assert failed(summary)["disputes.no_open_disputes"]["samples"] == [
        "unresolved dispute on input_hash 4 (label None): conflict"
    ]


@pytest.mark.parametrize(
    ("scheme", "minimum", "rate", "expected"),
    [
        (["ORG", "PERSON"], 3, 0.2, AnnotationRules(("ORG", "PERSON"), 3, 0.2)),
        ("['ORG', 'PERSON']", "3", "0.2", AnnotationRules(("ORG", "PERSON"), 3, 0.2)),
        ("ORG, PERSON", "0", "0", AnnotationRules(("ORG", "PERSON"), 0, 0.0)),
    ],
)
def test_rendered_parameters_become_rules(scheme, minimum, rate, expected) -> None:
    operator = AnnotationValidationOperator(
        task_id="validate",
        export_path="x.jsonl",
        label_scheme=scheme,
        min_examples_per_label=minimum,
        max_ignore_rate=rate,
    )
    assert operator.rules() == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"label_scheme": "['ORG'"}, "label_scheme \"['ORG'\" is not a list"),
        (
            {"label_scheme": ["ORG"], "max_ignore_rate": "a tenth"},
            "max_ignore_rate must be a number, not 'a tenth'",
        ),
        ({"label_scheme": [""]}, "label_scheme must be a non-empty list"),
        ({"label_scheme": ["ORG"], "max_ignore_rate": ""}, "max_ignore_rate rendered to nothing ('')"),
        (
            {"label_scheme": ["ORG"], "min_examples_per_label": "None"},
            "min_examples_per_label rendered to nothing",
        ),
    ],
)
def test_unusable_parameters_are_named(options, message) -> None:
    operator = AnnotationValidationOperator(task_id="validate", export_path="x.jsonl", **options)
    with pytest.raises(ValueError, match=re.escape(message)):
        operator.rules()
