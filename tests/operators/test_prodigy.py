"""Prodigy operators in real DAG runs (``dag.test()``) against the Prodigy sandbox's database and server.

Intake: a CSV becomes a dataset and a task stream; the sandbox serves the stream to simulated annotators over
HTTP while the deferred batch sensor waits; then the dataset is exported to JSONL and Parquet.
"""

from __future__ import annotations

import csv
import hashlib
import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG, task

from prodigy_opentext.exceptions import InvalidRecords, QuarantineLimitExceeded
from prodigy_opentext.hooks.prodigy import ProdigyHook
from prodigy_opentext.operators.prodigy import ProdigyExportOperator, ProdigyLoadTasksOperator
from prodigy_opentext.sensors.prodigy import ProdigyBatchSensor
from tests.fixtures.airflow_db import task_states
from tests.fixtures.background import acting_in_background
from tests.fixtures.samples import SAMPLES_DIR
from tests.hooks import prodigy_support as support
from tests.hooks.prodigy_support import WAIT_TIMEOUT, execute_sql, read_jsonl, sample_rows

prodigy_conn = support.prodigy_conn
prodigy_sqlite_conn = support.prodigy_sqlite_conn
deferred = support.deferred


def new_dag() -> DAG:
    return DAG(f"prodigy_{uuid.uuid4().hex[:8]}", schedule=None, start_date=datetime(2025, 1, 1))


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def issue_rows(count: int) -> list[dict[str, str]]:
    return [
        {"text": row["text"], "source": row["meta"]["source"], "url": row["meta"]["url"]}
        for row in sample_rows("textcat_docs_issues", count)
    ]


def intake_flow(source: Path, stream: Path, out: Path, record: Path, inputs: int) -> DAG:
    """load (CSV -> dataset, stream) >> wait (2 annotators per input) >> export JSONL and Parquet >> keep."""
    with new_dag() as dag:
        load = ProdigyLoadTasksOperator(
            task_id="load",
            source_path=str(source),
            dataset="issues",
            stream_path=str(stream),
            dataset_meta={"request": "{{ dag.dag_id }}", "labels": ["DOCUMENTATION"]},
        )
        wait = ProdigyBatchSensor(
            task_id="wait",
            dataset="issues",
            annotators_per_input=2,
            min_inputs=inputs,
            poke_interval=0.2,
            timeout=WAIT_TIMEOUT,
            deferrable=True,
        )
        export_jsonl = ProdigyExportOperator(
            task_id="export_jsonl", dataset="issues", output_path=str(out / "issues.jsonl")
        )
        export_parquet = ProdigyExportOperator(
            task_id="export_parquet",
            dataset="issues",
            output_path=str(out / "issues.parquet"),
            output_format="parquet",
            answer="accept",
        )

        @task
        def keep(loaded: dict, counts: dict, jsonl: dict, parquet: dict) -> None:
            record.write_text(
                json.dumps({"load": loaded, "wait": counts, "jsonl": jsonl, "parquet": parquet})
            )

        load >> wait >> [export_jsonl, export_parquet]
        keep(load.output, wait.output, export_jsonl.output, export_parquet.output)
    return dag


def test_intake_annotation_and_export_in_one_run(
    prodigy_sqlite_conn, run_dag, prodigy_server, run_prodigy, deferred, tmp_path
):
    import pyarrow.parquet as pq

    source = write_csv(tmp_path / "requests.csv", issue_rows(8) + issue_rows(2))  # two repeated rows
    stream, out, record = tmp_path / "stream" / "issues.jsonl", tmp_path / "release", tmp_path / "record.json"

    def annotate() -> None:
        url = prodigy_server("issues", stream, feed_overlap=True)
        run_prodigy("annotate", "--url", url, "--dataset", "issues", "--sessions", "alice,bob", "--seed", "3")

    with acting_in_background(annotate, after=deferred):
        run = run_dag(intake_flow(source, stream, out, record, inputs=8))
    tasks = ["load", "wait", "export_jsonl", "export_parquet", "keep"]
    assert task_states(run) == dict.fromkeys(tasks, "success")
    results = json.loads(record.read_text())

    assert results["load"] == {
        "dataset": "issues",
        "dataset_created": True,
        "stream_path": str(stream),
        "tasks": 8,
        "added": 8,
        "duplicates": 2,
    }
    tasks = read_jsonl(stream)
    assert [(task["text"], task["meta"]) for task in tasks] == [
        (row["text"], {"source": row["source"], "url": row["url"]}) for row in issue_rows(8)
    ]
    assert ProdigyHook().get_meta("issues") == {"request": run.dag_id, "labels": ["DOCUMENTATION"]}

    assert results["wait"] == {
        "dataset": "issues",
        "answers": 16,
        "inputs": 8,
        "inputs_done": 8,
        "annotators": 2,
        "invalid": 0,
    }

    stored = [json.loads(line) for line in run_prodigy("db-out", "issues").stdout.splitlines()]
    jsonl = results["jsonl"]
    assert read_jsonl(out / "issues.jsonl") == stored
    assert jsonl["rows"] == 16 and jsonl["by_annotator"] == {"issues-alice": 8, "issues-bob": 8}
    assert jsonl["sha256"] == hashlib.sha256((out / "issues.jsonl").read_bytes()).hexdigest()
    assert json.loads((out / "issues.jsonl.manifest.json").read_text()) == jsonl
    assert {task["_input_hash"] for task in stored} == {task["_input_hash"] for task in tasks}

    accepted = [task for task in stored if task["answer"] == "accept"]
    table = pq.read_table(out / "issues.parquet").to_pylist()
    assert [json.loads(row["content"]) for row in table] == accepted
    assert [(row["answer"], row["annotator"], row["task_hash"]) for row in table] == [
        (task["answer"], task["_annotator_id"], task["_task_hash"]) for task in accepted
    ]
    assert results["parquet"]["rows"] == len(accepted) and results["parquet"]["format"] == "parquet"


def test_rerunning_the_intake_adds_nothing(prodigy_sqlite_conn, run_dag, tmp_path):
    source = write_csv(tmp_path / "requests.csv", issue_rows(5))
    stream = tmp_path / "issues.jsonl"

    def intake() -> DAG:
        with new_dag() as dag:
            ProdigyLoadTasksOperator(
                task_id="load", source_path=str(source), dataset="issues", stream_path=str(stream)
            )
        return dag

    assert task_states(run_dag(intake())) == {"load": "success"}
    first = stream.read_bytes()
    write_csv(source, issue_rows(6))
    assert task_states(run_dag(intake())) == {"load": "success"}
    tasks = read_jsonl(stream)
    assert stream.read_bytes().startswith(first) and len(tasks) == 6
    assert len({task["_task_hash"] for task in tasks}) == 6


def test_bad_source_rows_fail_the_intake_by_line_and_write_nothing(prodigy_sqlite_conn, run_dag, tmp_path):
    rows = issue_rows(4)
    rows[1]["text"] = "  "
    source = write_csv(tmp_path / "requests.csv", rows)
    jsonl_source = tmp_path / "requests.jsonl"
    jsonl_source.write_text('{"text": "fine"}\n{"text": "cut\n{"meta": {}}\n', encoding="utf-8")
    stream = tmp_path / "issues.jsonl"
    load = ProdigyLoadTasksOperator(
        task_id="load", source_path=str(source), dataset="issues", stream_path=str(stream)
    )
    with pytest.raises(InvalidRecords, match=r"1 invalid rows: line 3: field 'text': empty text"):
        load.execute({})
    load_jsonl = ProdigyLoadTasksOperator(
        task_id="load_jsonl", source_path=str(jsonl_source), dataset="issues", stream_path=str(stream)
    )
    with pytest.raises(InvalidRecords) as caught:
        load_jsonl.execute({})
    assert [(error.row, error.field) for error in caught.value.errors] == [(2, "content"), (3, "text")]

    with new_dag() as dag:
        ProdigyLoadTasksOperator(
            task_id="load", source_path=str(source), dataset="issues", stream_path=str(stream)
        )
    assert task_states(run_dag(dag)) == {"load": "failed"}
    assert not stream.exists()
    assert not (prodigy_sqlite_conn / "prodigy.db").exists()


def export_dag(out: Path, **options: Any) -> DAG:
    with new_dag() as dag:
        ProdigyExportOperator(
            task_id="export", dataset="food", output_path=str(out), progress_every=100, **options
        )
    return dag


def test_export_quarantines_damaged_rows_and_fails_past_the_allowed_share(
    prodigy_conn, run_dag, run_prodigy, tmp_path
):
    run_prodigy("db-in", "food", SAMPLES_DIR / "ner_manual_food.jsonl")
    expected = sample_rows("ner_manual_food")
    ids = [example_id for example_id, _ in ProdigyHook().iter_rows("food")]
    execute_sql(prodigy_conn, "UPDATE example SET content = ? WHERE id = ?", (b"\xff\xfe not json", ids[5]))

    out = tmp_path / "strict" / "food.jsonl"
    assert task_states(run_dag(export_dag(out))) == {"export": "failed"}
    manifest = json.loads((tmp_path / "strict" / "food.jsonl.manifest.json").read_text())
    assert (manifest["rows"], manifest["quarantined"]) == (948, 1)
    (quarantined,) = read_jsonl(Path(manifest["quarantine_path"]))
    assert quarantined["example_id"] == ids[5] and quarantined["field"] == "content"
    assert quarantined["content_base64"] == "//4gbm90IGpzb24="
    assert read_jsonl(out) == expected[:5] + expected[6:]

    lenient = tmp_path / "lenient" / "food.jsonl"
    quarantine = tmp_path / "lenient" / "bad.jsonl"
    run = run_dag(export_dag(lenient, max_quarantined_fraction=0.01, quarantine_path=str(quarantine)))
    assert task_states(run) == {"export": "success"}
    manifest = json.loads((tmp_path / "lenient" / "food.jsonl.manifest.json").read_text())
    assert manifest["quarantine_path"] == str(quarantine) and quarantine.exists()
    assert manifest["by_label"] == {
        "INGRED": 443 - ("INGRED" in {span["label"] for span in expected[5]["spans"]})
    }

    operator = ProdigyExportOperator(
        task_id="direct", dataset="food", output_path=str(tmp_path / "direct.jsonl")
    )
    with pytest.raises(QuarantineLimitExceeded, match="'food': 1 of 949 rows failed validation"):
        operator.execute({})


def test_incremental_export_continues_after_the_last_example_id(
    prodigy_sqlite_conn, run_dag, run_prodigy, tmp_path
):
    run_prodigy("db-in", "food", SAMPLES_DIR / "ner_manual_food.jsonl")
    first = ProdigyExportOperator(
        task_id="first", dataset="food", output_path=str(tmp_path / "a.jsonl")
    ).execute({})
    more = sample_rows("ner_fashion_brands", 10)
    ProdigyHook().add_examples("food", more)
    with new_dag() as dag:
        ProdigyExportOperator(
            task_id="next",
            dataset="food",
            output_path=str(tmp_path / "b.jsonl"),
            since_id=str(first["last_example_id"]),
        )
    assert task_states(run_dag(dag)) == {"next": "success"}
    assert read_jsonl(tmp_path / "b.jsonl") == more
