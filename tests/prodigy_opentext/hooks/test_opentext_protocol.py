"""Unit tests of the plain-Python protocol pieces both OpenText hooks share."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from airflow.sdk import Connection

from prodigy_opentext.exceptions import (
    OpenTextAuthError,
    OpenTextError,
    OpenTextNotFoundError,
    OpenTextUnavailableError,
)
from prodigy_opentext.hooks.opentext import (
    OpenTextSettings,
    RetryPolicy,
    TokenCache,
    decision_probe,
    decode_answer,
    embedded_items,
    from_rest_variables,
    model_process_key,
    next_page_offset,
    normalise_root_url,
    parse_retry_after,
    read_model_xml,
    to_rest_variables,
)

MODEL = """<?xml version="1.0"?>
<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL">
  <process id="qa_review" isExecutable="true"><startEvent id="start"/></process>
</definitions>"""


def connection(**extra: object) -> Connection:
    return Connection(
        conn_id="ot",
        conn_type="opentext_workflow",
        host="https://na-1-dev.api.opentext.com/",
        login="client",
        password="secret",
        extra=json.dumps({"tenant_id": "t1", **extra}),
    )


def test_settings_build_urls_and_hide_secrets() -> None:
    settings = OpenTextSettings.from_connection(connection(timeout=5, retry_budget=7))
    assert settings.token_url == "https://na-1-dev.api.opentext.com/tenants/t1/oauth2/token"
    assert settings.api_url("/tasks") == "https://na-1-dev.api.opentext.com/workflow/v1/tasks"
    assert (settings.timeout, settings.retry.budget) == (5.0, 7.0)
    assert "secret" not in repr(settings)
    assert settings.token_form()["client_secret"] == "secret"


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        ({"tenant_id": ""}, "tenant_id"),
        ({"grant_type": "implicit"}, "grant_type"),
        ({"grant_type": "password"}, "username"),
    ],
)
def test_settings_name_the_bad_field(extra: dict, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint) as raised:
        OpenTextSettings.from_connection(connection(**extra))
    assert "'ot'" in str(raised.value)


def test_root_url_accepts_bare_hosts_and_api_base() -> None:
    assert normalise_root_url("eu.api.opentext.com") == "https://eu.api.opentext.com"
    assert normalise_root_url("http://127.0.0.1:8080/workflow/v1/") == "http://127.0.0.1:8080"


def test_retry_policy_backs_off_exponentially_within_its_budget() -> None:
    policy = RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=4.0, budget=100.0)
    delays = [policy.next_delay(attempt, 0.0, None) for attempt in range(5)]
    assert [int(d) for d in delays[:4]] == [1, 2, 4, 4]
    assert delays[4] is None
    assert policy.next_delay(0, 0.0, retry_after=7.0) == 7.0
    assert policy.next_delay(0, 95.0, retry_after=7.0) is None


def test_retry_after_in_seconds_or_http_date() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after(None) is None


def test_token_cache_refreshes_ahead_of_expiry() -> None:
    cache = TokenCache()
    assert cache.store({"access_token": "abc", "expires_in": 100}, now=0.0) == "abc"
    assert cache.current(now=89.0) == "abc"
    assert cache.current(now=91.0) is None
    with pytest.raises(OpenTextAuthError):
        cache.store({"token_type": "bearer"}, now=0.0)


@pytest.mark.parametrize(
    ("status", "body", "kind", "words"),
    [
        (401, {"fault": {"faultstring": "Invalid Access Token", "detail": {"errorcode": "keymanagement"}}},
         OpenTextAuthError, "Invalid Access Token [keymanagement]"),
        (404, {"message": "Could not find a task", "exception": "FlowableObjectNotFoundException"},
         OpenTextNotFoundError, "Could not find a task [FlowableObjectNotFoundException]"),
        (503, {"message": "down for maintenance"}, OpenTextUnavailableError, "down for maintenance"),
        (409, "plain text conflict", OpenTextError, "plain text conflict"),
    ],
)  # fmt: skip
def test_errors_carry_opentexts_own_words_and_status(
    status: int, body: object, kind: type, words: str
) -> None:
    text = body if isinstance(body, str) else json.dumps(body)
    with pytest.raises(kind) as raised:
        decode_answer(status, text, "2", method="GET", url="http://ot/workflow/v1/tasks/1")
    assert raised.value.status == status
    assert words in str(raised.value)
    assert "GET http://ot/workflow/v1/tasks/1" in str(raised.value)
    assert OpenTextError(**raised.value.to_dict()).message == raised.value.message


def test_envelope_items_and_paging() -> None:
    body = {"_embedded": {"tasks": [{"id": "1"}, {"id": "2"}]}, "page": {"totalElements": 5}}
    assert [item["id"] for item in embedded_items(body)] == ["1", "2"]
    assert next_page_offset(body, 0, 2, 2) == 2
    assert next_page_offset(body, 4, 1, 2) is None
    assert embedded_items({"page": {"totalElements": 0}}) == []
    with pytest.raises(OpenTextError, match="HAL"):
        embedded_items([{"id": "1"}])


def test_variables_keep_their_types_both_ways() -> None:
    moment = datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=UTC)
    values = {"ok": True, "n": 3, "big": 2**40, "score": 0.5, "name": "x", "due": moment, "meta": {"a": [1]}}
    typed = to_rest_variables(values)
    assert [item["type"] for item in typed] == [
        "boolean",
        "integer",
        "long",
        "double",
        "string",
        "date",
        "json",
    ]
    assert typed[5]["value"] == "2024-05-01T12:30:15.250+0000"
    assert from_rest_variables(typed) == values
    assert from_rest_variables([{"name": "j", "type": "json", "value": '{"b": 2}'}]) == {"j": {"b": 2}}
    with pytest.raises(TypeError, match="'blob'"):
        to_rest_variables({"blob": object()})


def test_model_xml_plain_base64_or_file(tmp_path) -> None:
    path = tmp_path / "qa.bpmn"
    path.write_text(MODEL)
    encoded = base64.b64encode(MODEL.encode()).decode()
    assert read_model_xml(path) == read_model_xml(str(path)) == read_model_xml(encoded) == MODEL
    assert model_process_key(MODEL) == "qa_review"
    with pytest.raises(ValueError, match="neither"):
        read_model_xml("no-such-file.bpmn")


def run_probe(answers: dict[str, object], **watch: str) -> dict | None:
    """Drive the decision probe with canned answers keyed by path."""
    probe = decision_probe("p1", **watch)
    reply = None
    try:
        while True:
            call = probe.send(reply)
            reply = answers[call.path]
    except StopIteration as done:
        return done.value


def hal(*items: dict) -> dict:
    return {"_embedded": {"items": list(items)}, "page": {"totalElements": len(items)}}


RUNNING = hal({"id": "p1", "businessKey": "b", "endTime": None, "variables": []})
APPROVED_TASK = {
    "id": "t1",
    "taskDefinitionKey": "sme_review",
    "assignee": "sme@x.com",
    "endTime": "2024-05-01T10:00:00.000+0000",
}
COMMENTS = [{"author": "sme@x.com", "message": "fine", "time": "2024-05-01T09:59:00.000+0000"}]


def test_probe_waits_while_the_instance_runs_undecided() -> None:
    answers = {"/historic-process-instances": RUNNING, "/historic-task-instances": hal()}
    assert run_probe(answers) is None
    assert run_probe(answers, task_definition_key="sme_review") is None
    assert run_probe(answers, decision_variable="verdict") is None


def test_probe_reads_a_completed_task_with_its_outcome_approver_and_comments() -> None:
    outcome = {"name": "sme_review_outcome", "type": "string", "value": "approved"}
    process = hal({"id": "p1", "businessKey": "b", "variables": [outcome]})
    answers = {
        "/historic-process-instances": process,
        "/historic-task-instances": hal(APPROVED_TASK),
        "/process-instances/p1/comments": COMMENTS,
    }
    decision = run_probe(answers, task_definition_key="sme_review")
    assert decision is not None
    assert (decision["outcome"], decision["approver"], decision["ended"]) == ("approved", "sme@x.com", False)
    assert decision["comments"] == COMMENTS
    assert decision["decided_at"] == APPROVED_TASK["endTime"]


def test_probe_decides_when_the_instance_ended_first() -> None:
    outcome = {"name": "outcome", "type": "string", "value": "rejected"}
    ended = hal(
        {
            "id": "p1",
            "endTime": "2024-05-02T00:00:00.000+0000",
            "endActivityId": "end_rejected",
            "variables": [outcome],
        }
    )
    answers = {
        "/historic-process-instances": ended,
        "/historic-task-instances": hal(),
        "/process-instances/p1/comments": [],
    }
    decision = run_probe(answers, task_definition_key="compliance_review")
    assert decision is not None
    assert (decision["end_activity_id"], decision["outcome"], decision["approver"]) == (
        "end_rejected",
        None,
        None,
    )
    assert run_probe(answers)["outcome"] == "rejected"


def test_probe_reports_an_unknown_instance() -> None:
    with pytest.raises(OpenTextNotFoundError, match="p1"):
        run_probe({"/historic-process-instances": hal()})
