"""OpenTextApprovalSensor in real DAG runs (``dag.test()``) against the OpenText sandbox over HTTP.

A reviewer acts from a background thread, through the sandbox's API, once the sensor waits.

"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG, task

from prodigy_opentext.hooks.opentext_async import OpenTextWorkflowAsyncHook
from prodigy_opentext.operators.opentext import OpenTextStartProcessOperator
from prodigy_opentext.sensors.opentext import OpenTextApprovalSensor
from tests.fixtures.airflow_db import task_states
from tests.fixtures.background import acting_in_background
from tests.fixtures.opentext_sandbox import poll_until
from tests.hooks.test_opentext_contract import connection_json

BATCH_APPROVAL = "annotation_batch_approval"
REVIEW_TIMEOUT = 120


@pytest.fixture
def opentext(opentext_sandbox_session: Any, airflow_db: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The shared sandbox as the ``opentext_default`` connection of DAG runs in this process."""
    monkeypatch.setenv("AIRFLOW_CONN_OPENTEXT_DEFAULT", connection_json(opentext_sandbox_session))
    return opentext_sandbox_session


@pytest.fixture
def deferred(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set once the deferred sensor's trigger has read OpenText and found no decision yet."""
    waiting = threading.Event()
    read_decision = OpenTextWorkflowAsyncHook.read_decision

    async def read_and_signal(self: OpenTextWorkflowAsyncHook, *args: Any) -> dict[str, Any] | None:
        decision = await read_decision(self, *args)
        if decision is None:
            waiting.set()
        return decision

    monkeypatch.setattr(OpenTextWorkflowAsyncHook, "read_decision", read_and_signal)
    return waiting


@pytest.fixture
def poked(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set once the sensor in poke mode has looked and found no decision yet."""
    looked = threading.Event()
    poke = OpenTextApprovalSensor.poke

    def poke_and_signal(self: OpenTextApprovalSensor, context: Any) -> Any:
        found = poke(self, context)
        if not found:
            looked.set()
        return found

    monkeypatch.setattr(OpenTextApprovalSensor, "poke", poke_and_signal)
    return looked


def approval_dag(dag_id: str, business_key: str, record: str, **sensor_options: Any) -> DAG:
    """start (OpenText process) >> wait (sensor) >> record (writes the sensor's XCom to ``record``)."""
    with DAG(dag_id, schedule=None, start_date=datetime(2025, 1, 1)) as dag:
        start = OpenTextStartProcessOperator(
            task_id="start",
            process_definition_key=BATCH_APPROVAL,
            business_key=business_key,
            variables={"dataset": "ner_news", "batch_version": 3, "regulated": False},
        )
        wait = OpenTextApprovalSensor(
            task_id="wait",
            process_instance_id="{{ ti.xcom_pull(task_ids='start') }}",
            task_definition_key="sme_review",
            **{"poke_interval": 0.5, "response_timeout": REVIEW_TIMEOUT, **sensor_options},
        )

        @task
        def record_decision(decision: dict[str, Any]) -> None:
            Path(record).write_text(json.dumps(decision))

        @task
        def publish() -> None:
            Path(record).write_text(json.dumps({"followed": "publish"}))

        @task
        def rework() -> None:
            Path(record).write_text(json.dumps({"followed": "rework"}))

        start >> wait
        if sensor_options.get("on_rejection") == "branch":
            wait >> [publish(), rework()]
        else:
            record_decision(wait.output)
    return dag


def decide(sandbox: Any, business_key: str, outcome: str, user: str, comment: str) -> None:
    """A reviewer comments on the batch's open SME review, then completes it."""
    tasks = poll_until(
        lambda: sandbox.tasks(processInstanceBusinessKey=business_key), REVIEW_TIMEOUT, 0.2, "the review task"
    )
    (review,) = tasks
    path = f"/process-instances/{review['processInstanceId']}/comments"
    assert sandbox.request("POST", path, user=user, json={"message": comment}).ok
    sandbox.complete(review["id"], outcome, user)


def names(tmp_path: Path) -> tuple[str, str, str]:
    """A DAG id, a business key and a record file of one test."""
    suffix = uuid.uuid4().hex[:8]
    return f"approval_{suffix}", f"batch-{suffix}", str(tmp_path / "decision.json")


def test_deferred_sensor_resumes_on_approval_and_carries_the_decision(
    opentext, run_dag, deferred, tmp_path
) -> None:
    dag_id, business_key, record = names(tmp_path)
    with acting_in_background(
        lambda: decide(opentext, business_key, "approved", "sme@example.com", "Spans look right"),
        after=deferred,
    ):
        run = run_dag(approval_dag(dag_id=dag_id, business_key=business_key, record=record, deferrable=True))
    assert deferred.is_set()
    assert task_states(run) == {"start": "success", "wait": "success", "record_decision": "success"}
    decision = json.loads(Path(record).read_text())
    assert (decision["approved"], decision["outcome"], decision["approver"]) == (
        True,
        "approved",
        "sme@example.com",
    )
    assert [(c["author"], c["message"]) for c in decision["comments"]] == [
        ("sme@example.com", "Spans look right")
    ]
    assert decision["decided_at"] and decision["business_key"] == business_key
    history = opentext.request(
        "GET", "/historic-process-instances", params={"businessKey": business_key}
    ).json()
    (process,) = history["_embedded"]["historicProcessInstances"]
    assert decision["process_instance_id"] == process["id"]


def test_poke_mode_waits_the_same_way(opentext, run_dag, poked, tmp_path) -> None:
    dag_id, business_key, record = names(tmp_path)
    with acting_in_background(
        lambda: decide(opentext, business_key, "approved", "second.sme@example.com", "Ship it"), after=poked
    ):
        run = run_dag(
            approval_dag(
                dag_id=dag_id,
                business_key=business_key,
                record=record,
                deferrable=False,
                mode="poke",
            )
        )
    assert task_states(run)["wait"] == "success"
    decision = json.loads(Path(record).read_text())
    assert (decision["approved"], decision["approver"]) == (True, "second.sme@example.com")
    assert [c["message"] for c in decision["comments"]] == ["Ship it"]


@pytest.mark.parametrize(
    ("on_rejection", "expected"),
    [
        ("fail", {"wait": "failed", "record_decision": "upstream_failed"}),
        ("skip", {"wait": "skipped", "record_decision": "skipped"}),
        ("branch", {"wait": "success", "publish": "skipped", "rework": "success"}),
        ("continue", {"wait": "success", "record_decision": "success"}),
    ],
)
def test_rejection_takes_the_configured_path(
    opentext, run_dag, deferred, tmp_path, on_rejection, expected
) -> None:
    dag_id, business_key, record = names(tmp_path)
    branches = (
        {"approved_task_ids": ["publish"], "rejected_task_ids": ["rework"]}
        if on_rejection == "branch"
        else {}
    )
    with acting_in_background(
        lambda: decide(opentext, business_key, "rejected", "sme@example.com", "Too many misses"),
        after=deferred,
    ):
        run = run_dag(
            approval_dag(
                dag_id=dag_id,
                business_key=business_key,
                record=record,
                deferrable=True,
                on_rejection=on_rejection,
                **branches,
            )
        )
    assert {task_id: state for task_id, state in task_states(run).items() if task_id != "start"} == expected
    if on_rejection == "branch":
        assert json.loads(Path(record).read_text()) == {"followed": "rework"}
    elif on_rejection == "continue":
        decision = json.loads(Path(record).read_text())
        assert (decision["approved"], decision["outcome"]) == (False, "rejected")
        assert [c["message"] for c in decision["comments"]] == ["Too many misses"]
    else:
        assert not Path(record).exists()


@pytest.mark.parametrize("deferrable", [True, False])
def test_no_decision_within_the_response_timeout_fails_the_sensor(
    opentext, run_dag, tmp_path, deferrable
) -> None:
    dag_id, business_key, record = names(tmp_path)
    run = run_dag(
        approval_dag(
            dag_id=dag_id,
            business_key=business_key,
            record=record,
            deferrable=deferrable,
            response_timeout=2,
        )
    )
    assert task_states(run)["wait"] == "failed"
    assert not Path(record).exists()


@pytest.mark.parametrize("deferrable", [True, False])
def test_the_response_timeout_runs_from_the_process_start_not_from_each_try(
    opentext, run_dag, deferred, poked, tmp_path, deferrable
) -> None:
    """A later run waiting on the same process (here: the same business key, as a retry or rerun would) gets
    no fresh period: the deadline is the process start plus the timeout, and it fails at once."""
    from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook, parse_timestamp

    looked = deferred if deferrable else poked
    _, business_key, record = names(tmp_path)
    options = {"response_timeout": 2, "deferrable": deferrable}
    first = run_dag(approval_dag(f"first_{uuid.uuid4().hex[:8]}", business_key, record, **options))
    assert task_states(first)["wait"] == "failed" and looked.is_set()
    (process,) = OpenTextWorkflowHook().historic_processes(businessKey=business_key)
    deadline = parse_timestamp(process["startTime"]) + timedelta(seconds=2)

    looked.clear()
    second = run_dag(approval_dag(f"second_{uuid.uuid4().hex[:8]}", business_key, record, **options))
    assert task_states(second)["wait"] == "failed"
    assert not looked.is_set(), "the second run waited again instead of failing at the process deadline"
    assert second.get_task_instance("wait").try_number == 1
    probe = OpenTextApprovalSensor(task_id="probe", process_instance_id=process["id"], response_timeout=2)
    assert probe._response_deadline == deadline


def test_a_timed_out_wait_with_soft_fail_is_skipped(opentext, run_dag, tmp_path) -> None:
    _, business_key, record = names(tmp_path)
    first = run_dag(approval_dag(f"first_{uuid.uuid4().hex[:8]}", business_key, record, response_timeout=1))
    assert task_states(first)["wait"] == "failed"
    options = {"response_timeout": 1, "soft_fail": True}
    second = run_dag(approval_dag(f"second_{uuid.uuid4().hex[:8]}", business_key, record, **options))
    assert task_states(second)["wait"] == "skipped"
