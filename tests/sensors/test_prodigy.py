"""ProdigyBatchSensor in real DAG runs (``dag.test()``): answers arrive over HTTP while it waits."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG, Param, task

from prodigy_opentext.exceptions import ProdigyDatabaseError
from prodigy_opentext.hooks.prodigy import ProdigyHook
from prodigy_opentext.sensors.prodigy import ProdigyBatchSensor
from tests.fixtures.background import acting_in_background
from tests.hooks import prodigy_support as support
from tests.hooks.prodigy_support import WAIT_TIMEOUT, sample_rows, write_jsonl

prodigy_sqlite_conn = support.prodigy_sqlite_conn
deferred = support.deferred


def sensor_dag(record: Path, **sensor_options: Any) -> DAG:
    """wait (sensor, targets from params) >> keep (writes the sensor's XCom to ``record``)."""
    params = {
        "min_answers": Param(None, type=["null", "integer"]),
        "per_input": Param(None, type=["null", "integer"]),
    }
    with DAG(
        f"batch_{uuid.uuid4().hex[:8]}", schedule=None, start_date=datetime(2025, 1, 1), params=params
    ) as dag:
        wait = ProdigyBatchSensor(
            task_id="wait",
            dataset="news",
            min_answers="{{ params.min_answers or None }}",
            annotators_per_input="{{ params.per_input or None }}",
            poke_interval=0.2,
            timeout=WAIT_TIMEOUT,
            **sensor_options,
        )

        @task
        def keep(counts: dict) -> None:
            record.write_text(json.dumps(counts))

        keep(wait.output)
    return dag


def news_tasks(count: int) -> list[dict]:
    return [
        {"text": row["text"], "label": "DOCUMENTATION"} for row in sample_rows("textcat_docs_issues", count)
    ]


def test_deferred_sensor_resumes_when_annotators_answer(
    prodigy_sqlite_conn, run_dag, prodigy_server, run_prodigy, deferred, tmp_path
):
    url = prodigy_server("news", write_jsonl(tmp_path / "tasks.jsonl", news_tasks(6)), feed_overlap=True)
    record = tmp_path / "counts.json"
    annotate = ("annotate", "--url", url, "--dataset", "news", "--sessions", "alice,bob", "--seed", "5")
    with acting_in_background(lambda: run_prodigy(*annotate), after=deferred):
        run = run_dag(sensor_dag(record, deferrable=True), run_conf={"per_input": 2, "min_answers": 12})
    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == {"wait": "success", "keep": "success"}
    counts = json.loads(record.read_text())
    assert counts == {
        "dataset": "news",
        "answers": 12,
        "inputs": 6,
        "inputs_done": 6,
        "annotators": 2,
        "invalid": 0,
    }


def test_poking_sensor_returns_counts_once_reached(prodigy_sqlite_conn, run_dag, run_prodigy, tmp_path):
    rows = sample_rows("textcat_docs_issues", 20)
    run_prodigy("db-in", "news", write_jsonl(tmp_path / "answers.jsonl", rows))
    record = tmp_path / "counts.json"
    run = run_dag(sensor_dag(record, deferrable=False), run_conf={"min_answers": 20})
    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == {"wait": "success", "keep": "success"}
    assert json.loads(record.read_text()) == {"dataset": "news", "answers": 20}


def test_a_target_that_cannot_be_met_is_refused_when_the_dag_is_parsed():
    with pytest.raises(ValueError, match="needs min_answers, annotators_per_input or both"):
        ProdigyBatchSensor(task_id="wait", dataset="news")
    with pytest.raises(ValueError, match="min_answers must be a positive integer, not -1"):
        ProdigyBatchSensor(task_id="wait", dataset="news", min_answers=-1)


def test_rendered_targets_are_read_as_numbers_or_unset():
    sensor = ProdigyBatchSensor(
        task_id="wait", dataset="news", min_answers="{{ x }}", annotators_per_input=""
    )
    sensor.min_answers, sensor.min_inputs = "25", "3"
    assert sensor.target.as_dict() == {"min_answers": 25, "annotators_per_input": None, "min_inputs": 3}
    sensor.min_answers = "many"
    with pytest.raises(ValueError, match="min_answers must be a whole number, not 'many'"):
        sensor.target  # noqa: B018 (the property builds the target)


def test_resuming_checks_the_trigger_event():
    sensor = ProdigyBatchSensor(task_id="wait", dataset="news", min_answers=5)
    counts = {"dataset": "news", "answers": 5}
    assert sensor.execute_complete({}, {"status": "reached", "counts": counts, "target": {}}) == counts
    with pytest.raises(ProdigyDatabaseError, match="'news' failed: cannot connect"):
        sensor.execute_complete({}, {"status": "error", "message": "cannot connect"})
    with pytest.raises(ValueError, match="unexpected event"):
        sensor.execute_complete({}, {"status": "reached"})
    with pytest.raises(ValueError, match="below its target"):
        sensor.execute_complete({}, {"status": "reached", "counts": {"dataset": "news", "answers": 4}})


def test_poke_reports_counts_without_deferring(prodigy_sqlite_conn):
    ProdigyHook().add_examples(
        "news", [dict(row, answer="accept") for row in sample_rows("textcat_docs_issues", 3)]
    )
    sensor = ProdigyBatchSensor(task_id="wait", dataset="news", min_answers=4, deferrable=False)
    result = sensor.poke({})
    assert (result.is_done, result.xcom_value) == (False, {"dataset": "news", "answers": 3})
