"""The sandbox executes the models' HttpTasks: once, after the decision is stored, with the token from the
tenant configuration, and a failed call never holds the process up."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.fixtures.opentext_sandbox import OpenTextSandbox, poll_until

TOKEN = "callback-token-3f9a1c"


class Receiver:
    """An HTTP endpoint that records each request and what the sandbox said about its process then."""

    def __init__(self, sandbox: OpenTextSandbox) -> None:
        self.received: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                process = sandbox.historic_instance(body["processInstanceId"])
                receiver.received.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body, "process": process}
                )
                self.send_response(202)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/opentext-callbacks/decisions"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver(sandbox: OpenTextSandbox) -> Iterator[Receiver]:
    receiving = Receiver(sandbox)
    sandbox.set_configuration(airflow_callback_url=receiving.url, airflow_callback_token=TOKEN)
    yield receiving
    receiving.server.shutdown()
    sandbox.set_configuration(airflow_callback_url="", airflow_callback_token="")


def decide(sandbox: OpenTextSandbox, instance_id: str, outcome: str, user: str) -> None:
    (task,) = sandbox.tasks(processInstanceId=instance_id)
    sandbox.complete(task["id"], outcome, user)


def calls_of(sandbox: OpenTextSandbox, instance_id: str, count: int) -> list[dict[str, Any]]:
    return poll_until(
        lambda: (
            (found := [c for c in sandbox.http_calls() if c["processInstanceId"] == instance_id])
            and len(found) >= count
            and found
        ),
        30,
        0.1,
        f"{count} HttpTask call(s) of {instance_id}",
    )


def test_each_decision_calls_back_once_after_it_is_stored(
    sandbox: OpenTextSandbox, receiver: Receiver, business_key: str
) -> None:
    started = sandbox.start_process("annotation_batch_approval", business_key, {"regulated": True})
    decide(sandbox, started["id"], "approved", sandbox.member_of("annotation-sme"))
    decide(sandbox, started["id"], "approved", sandbox.member_of("compliance-officers"))

    calls = calls_of(sandbox, started["id"], 2)
    assert [(c["activityId"], c["method"], c["url"], c["status"]) for c in calls] == [
        ("sme_review_done", "POST", receiver.url, 202),
        ("compliance_review_done", "POST", receiver.url, 202),
    ]
    mine = [r for r in receiver.received if r["body"]["processInstanceId"] == started["id"]]
    assert [r["body"] for r in mine] == [
        {"processInstanceId": started["id"], "activityId": "sme_review"},
        {"processInstanceId": started["id"], "activityId": "compliance_review"},
    ]
    assert {r["headers"]["Authorization"] for r in mine} == {f"Bearer {TOKEN}"}
    assert mine[-1]["process"]["endActivityId"] == "end_approved", "the call arrives after the end is stored"

    variables = sandbox.request(
        "GET", f"/historic-process-instances/{started['id']}", params={"includeProcessVariables": "true"}
    ).text
    assert TOKEN not in variables and TOKEN not in json.dumps(sandbox.http_calls())


def test_a_callback_that_fails_does_not_hold_the_process_up(
    sandbox: OpenTextSandbox, receiver: Receiver, business_key: str
) -> None:
    sandbox.set_configuration(airflow_callback_url="http://127.0.0.1:9/unreachable")
    started = sandbox.start_process("dataset_release_signoff", business_key, {"dataset": "d"})
    decide(sandbox, started["id"], "rejected", sandbox.member_of("release-managers"))

    (call,) = calls_of(sandbox, started["id"], 1)
    assert call["activityId"] == "release_signoff_done" and "ConnectionError" in call["error"]
    assert sandbox.historic_instance(started["id"])["endActivityId"] == "end_rejected"


def test_without_a_callback_url_nothing_is_sent_and_the_reason_is_listed(
    sandbox: OpenTextSandbox, business_key: str
) -> None:
    started = sandbox.start_process("dataset_release_signoff", business_key, {"dataset": "d"})
    decide(sandbox, started["id"], "approved", sandbox.member_of("release-managers"))

    (call,) = calls_of(sandbox, started["id"], 1)
    assert call["error"].startswith("requestUrl is empty") and "status" not in call
    assert sandbox.historic_instance(started["id"])["endActivityId"] == "end_approved"


def test_a_service_task_of_another_type_is_refused_at_deployment(sandbox: OpenTextSandbox) -> None:
    model = """<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:flowable="http://flowable.org/bpmn"
             targetNamespace="t">
  <process id="mail_only" isExecutable="true">
    <startEvent id="start"/>
    <sequenceFlow id="f1" sourceRef="start" targetRef="mail"/>
    <serviceTask id="mail" flowable:type="mail"/>
    <sequenceFlow id="f2" sourceRef="mail" targetRef="end"/>
    <endEvent id="end"/>
  </process>
</definitions>"""
    response = sandbox.request("POST", "/runtime/models", json={"modelType": "xml", "modelContent": model})
    assert response.status_code == 400
    assert "service task 'mail' is of type 'mail'" in response.text
