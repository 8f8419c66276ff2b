"""Decisions pushed from OpenText: the model's HttpTask calls Airflow's callback endpoint, and the waiting
sensor resumes at once instead of at its next poll; when the call cannot reach Airflow, polling finishes.

Real parts: the project's batch-approval model in the OpenText sandbox (which executes its HttpTasks over
HTTP), the provider's callback app served over HTTP as the api-server mounts it, the metadata database,
and the sensor's deferred wait run by ``dag.test()``.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from prodigy_opentext.decision_signals import SIGNAL_PREFIX, signal_key
from tests.fixtures.airflow_db import as_a_task, task_states
from tests.fixtures.background import acting_in_background
from tests.fixtures.callbacks import serving_callbacks
from tests.sensors import test_opentext_sensor as sensor_tests
from tests.sensors.test_opentext_sensor import approval_dag, decide, names

TOKEN = "shared-callback-token-51c2"
SME = "sme@example.com"
opentext = sensor_tests.opentext
deferred = sensor_tests.deferred
PUSHED_POLL_SECONDS = 600
"""The fallback's pace in the pushed test: a resume before it can only be the callback's doing."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def callback_url() -> Iterator[str]:
    with serving_callbacks() as url:
        yield url


@pytest.fixture
def callbacks(opentext, callback_url: str, airflow_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Airflow holds the token in its ``opentext_callback`` connection; OpenText in its configuration."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_OPENTEXT_CALLBACK", json.dumps({"conn_type": "generic", "password": TOKEN})
    )
    opentext.set_configuration(airflow_callback_url=callback_url, airflow_callback_token=TOKEN)
    yield callback_url
    opentext.set_configuration(airflow_callback_url="", airflow_callback_token="")


def signals() -> list[str]:
    from airflow.sdk import Variable

    with as_a_task():  # the SDK lists Variables through a task's channel only
        return list(Variable.keys(prefix=SIGNAL_PREFIX))


def calls_of(sandbox: Any, business_key: str) -> list[dict[str, Any]]:
    (process,) = sandbox.request(
        "GET", "/historic-process-instances", params={"businessKey": business_key}
    ).json()["_embedded"]["historicProcessInstances"]
    return [call for call in sandbox.http_calls() if call["processInstanceId"] == process["id"]]


def decided_then_resumed(opentext, run_dag, deferred, tmp_path, poll_seconds: float) -> tuple[float, str]:
    """The approval DAG, run to success while an SME approves once the sensor has deferred: the seconds
    from the decision to the sensor's end, and the business key."""
    dag_id, business_key, record = names(tmp_path)
    decided: list[float] = []

    def approve() -> None:
        decide(opentext, business_key, "approved", SME, "Looks right")
        decided.append(time.time())

    with acting_in_background(approve, after=deferred):
        # Reviewers have a minute: a wait the callback does not wake fails then, not after the poll.
        options = {"deferrable": True, "poke_interval": poll_seconds, "response_timeout": 60}
        run = run_dag(approval_dag(dag_id, business_key, record, **options))
    assert task_states(run) == {"start": "success", "wait": "success", "record_decision": "success"}
    (wait,) = [ti for ti in run.get_task_instances() if ti.task_id == "wait"]
    return wait.end_date.timestamp() - decided[0], business_key


@pytest.mark.slow
def test_the_models_callback_wakes_the_waiting_sensor_long_before_its_poll(
    opentext, callbacks, run_dag, deferred, tmp_path
) -> None:
    seconds, business_key = decided_then_resumed(opentext, run_dag, deferred, tmp_path, PUSHED_POLL_SECONDS)
    print(f"decision to resume: {seconds:.2f}s (poll interval {PUSHED_POLL_SECONDS}s)")
    assert seconds < 30, f"resumed {seconds:.1f}s after the decision: not by the callback"
    (call,) = calls_of(opentext, business_key)
    assert (call["activityId"], call["status"]) == ("sme_review_done", 202)
    assert signals() == [], "the sensor forgets the signal once it has taken the decision"


@pytest.mark.slow
def test_when_the_callback_cannot_reach_airflow_polling_finishes_the_wait(
    opentext, callbacks, run_dag, deferred, tmp_path
) -> None:
    opentext.set_configuration(
        airflow_callback_url=f"http://127.0.0.1:{_free_port()}/opentext-callbacks/decisions"
    )
    _, business_key = decided_then_resumed(opentext, run_dag, deferred, tmp_path, 2)
    (call,) = calls_of(opentext, business_key)
    assert call["activityId"] == "sme_review_done" and "ConnectionError" in call["error"]
    assert signals() == []


def test_the_endpoint_refuses_a_wrong_token_and_a_bad_body_and_sets_one_signal(
    callbacks: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk import Variable

    def post(body: Any, token: str | None = TOKEN) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.post(callbacks, json=body, headers=headers, timeout=30)

    body = {"processInstanceId": "8c2d-0001", "activityId": "sme_review"}
    assert post(body, token="guessed").status_code == 401
    assert post(body, token=None).status_code == 401
    bad = post({"processInstanceId": "../../etc", "activityId": "sme_review"})
    assert bad.status_code == 400 and "processInstanceId must be an identifier" in bad.text
    ambiguous = post({"processInstanceId": "8c2d", "activityId": "sme__review"})
    assert ambiguous.status_code == 400 and "activityId must be an identifier" in ambiguous.text
    assert signals() == []

    accepted = post(body)
    key = signal_key("8c2d-0001", "sme_review")
    assert (accepted.status_code, accepted.json()) == (202, {"signal": key})
    assert signals() == [key]
    assert json.loads(Variable.get(key))["activity_id"] == "sme_review"
    with as_a_task():
        Variable.delete(key)

    monkeypatch.delenv("AIRFLOW_CONN_OPENTEXT_CALLBACK")
    unset = post(body)
    assert unset.status_code == 503 and "add the Airflow connection 'opentext_callback'" in unset.text
    assert signals() == []
