"""The token endpoint, bearer checks and the two error shapes (gateway ``fault``, service ``message``)."""

from __future__ import annotations

import base64

import pytest
import requests

from tests.fixtures.opentext_sandbox import PASSWORD, OpenTextSandbox, poll_until


def _token_url(sandbox: OpenTextSandbox) -> str:
    return f"{sandbox.url}/tenants/{sandbox.tenant}/oauth2/token"


def _get_tasks(sandbox: OpenTextSandbox, token: str) -> requests.Response:
    return requests.get(f"{sandbox.api}/tasks", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _assert_fault(response: requests.Response, status: int, errorcode: str) -> None:
    assert response.status_code == status, response.text
    fault = response.json()["fault"]
    assert fault["detail"]["errorcode"] == errorcode
    assert fault["faultstring"]


@pytest.mark.parametrize("encoding", ["json", "form", "basic"])
def test_client_credentials_grant(sandbox: OpenTextSandbox, encoding):
    fields = {
        "grant_type": "client_credentials",
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
    }
    if encoding == "json":
        response = requests.post(_token_url(sandbox), json=fields, timeout=30)
    elif encoding == "form":
        response = requests.post(_token_url(sandbox), data=fields, timeout=30)
    else:
        basic = base64.b64encode(f"{sandbox.client_id}:{sandbox.client_secret}".encode()).decode()
        response = requests.post(
            _token_url(sandbox),
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
            timeout=30,
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    assert _get_tasks(sandbox, body["access_token"]).status_code == 200


def test_password_grant_makes_the_user_the_actor(sandbox: OpenTextSandbox, business_key):
    token = requests.post(
        _token_url(sandbox),
        json={
            "grant_type": "password",
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
            "username": "owner@example.com",
            "password": PASSWORD,
        },
        timeout=30,
    ).json()["access_token"]
    response = requests.post(
        f"{sandbox.api}/process-instances",
        json={"processDefinitionKey": "qa_review", "businessKey": business_key},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 201
    assert response.json()["startUserId"] == "owner@example.com"


@pytest.mark.parametrize(
    ("fields", "status", "error"),
    [
        (
            {"grant_type": "client_credentials", "client_id": "airflow", "client_secret": "wrong"},
            401,
            "invalid_client",
        ),
        ({"grant_type": "client_credentials", "client_id": "airflow"}, 400, "invalid_request"),
        (
            {"grant_type": "authorization_code", "client_id": "airflow", "client_secret": "airflow-secret"},
            400,
            "unsupported_grant_type",
        ),
        (
            {"grant_type": "password", "client_id": "airflow", "client_secret": "airflow-secret"},
            400,
            "invalid_request",
        ),
        (
            {
                "grant_type": "password",
                "client_id": "airflow",
                "client_secret": "airflow-secret",
                "username": "owner@example.com",
                "password": "wrong",
            },
            400,
            "invalid_grant",
        ),
        (
            {
                "grant_type": "password",
                "client_id": "airflow",
                "client_secret": "airflow-secret",
                "username": "nobody@example.com",
                "password": PASSWORD,
            },
            400,
            "invalid_grant",
        ),
    ],
)
def test_token_endpoint_rejects_bad_requests(sandbox: OpenTextSandbox, fields, status, error):
    response = requests.post(_token_url(sandbox), json=fields, timeout=30)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert response.json()["error_description"]


def test_api_calls_need_a_valid_bearer_token(sandbox: OpenTextSandbox):
    _assert_fault(requests.get(f"{sandbox.api}/tasks", timeout=30), 401, "oauth.v2.InvalidAccessToken")
    _assert_fault(_get_tasks(sandbox, "not-a-token"), 401, "keymanagement.service.invalid_access_token")
    basic = requests.get(f"{sandbox.api}/tasks", headers={"Authorization": "Basic YTpi"}, timeout=30)
    _assert_fault(basic, 401, "oauth.v2.InvalidAccessToken")


def test_expired_token_is_refused_and_a_new_one_works(opentext_sandbox_factory):
    sandbox = opentext_sandbox_factory(token_lifetime=1)
    token = sandbox.token()
    responses: list[requests.Response] = []
    poll_until(
        lambda: responses.append(_get_tasks(sandbox, token)) or responses[-1].status_code == 401,
        what="the 1-second token to expire",
    )
    expired = responses[-1]
    _assert_fault(expired, 401, "keymanagement.service.access_token_expired")
    assert _get_tasks(sandbox, sandbox.token(refresh=True)).status_code == 200


def test_service_errors_carry_message_and_exception(sandbox: OpenTextSandbox):
    missing = sandbox.request("GET", "/tasks/no-such-task")
    assert missing.status_code == 404
    assert missing.json() == {
        "message": "Not found",
        "exception": "Could not find a task with id 'no-such-task'.",
    }

    unknown_key = sandbox.request(
        "POST", "/process-instances", json={"processDefinitionKey": "no_such_process"}
    )
    assert unknown_key.status_code == 404
    assert "no_such_process" in unknown_key.json()["exception"]

    two_selectors = sandbox.request(
        "POST",
        "/process-instances",
        json={"processDefinitionKey": "qa_review", "message": "annotationRequest"},
    )
    assert two_selectors.status_code == 400
    assert two_selectors.json()["message"] == "Bad request"
    assert (
        "Exactly one of processDefinitionId, processDefinitionKey or message"
        in two_selectors.json()["exception"]
    )

    bad_variable = sandbox.request(
        "POST",
        "/process-instances",
        json={
            "processDefinitionKey": "qa_review",
            "variables": [{"name": "rework_round", "type": "integer", "value": "x"}],
        },
    )
    assert bad_variable.status_code == 400
    assert "rework_round" in bad_variable.json()["exception"]

    bad_paging = sandbox.request("GET", "/tasks", params={"count": "ten"})
    assert bad_paging.status_code == 400 and "count" in bad_paging.json()["exception"]

    no_route = sandbox.request("GET", "/no-such-resource")
    assert no_route.status_code == 404 and no_route.json()["message"] == "Not found"


def test_claiming_a_task_someone_else_holds_is_a_conflict(sandbox: OpenTextSandbox, business_key):
    instance = sandbox.start_process("qa_review", business_key)
    (task,) = sandbox.tasks(processInstanceId=instance["id"])
    for reviewer in ("first@example.com", "second@example.com"):
        sandbox.set_user_groups(reviewer, ["qa-reviewers"])
    sandbox.claim(task["id"], "first@example.com")
    response = sandbox.request(
        "POST",
        f"/tasks/{task['id']}",
        user="second@example.com",
        json={"action": "claim", "assignee": "second@example.com"},
    )
    assert response.status_code == 409
    assert response.json() == {
        "message": "Conflict",
        "exception": f"Task '{task['id']}' is already claimed by someone else.",
    }
    assert sandbox.request("GET", f"/tasks/{task['id']}").json()["assignee"] == "first@example.com"


def test_unknown_paths_outside_the_api_get_the_gateway_fault(sandbox: OpenTextSandbox):
    _assert_fault(
        requests.get(f"{sandbox.url}/not-an-api", timeout=30),
        404,
        "messaging.adaptors.http.flow.ApplicationNotFound",
    )
