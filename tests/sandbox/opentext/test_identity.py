"""Identity as a tenant enforces it: who may claim and complete a task, the initiator rule of a model,
the groups a user is in, and tokens that reach their own tenant's data only."""

from __future__ import annotations

import requests

from tests.fixtures.opentext_sandbox import PASSWORD, OpenTextSandbox


def _act(sandbox: OpenTextSandbox, task_id: str, user: str | None, **body: object) -> requests.Response:
    return sandbox.request("POST", f"/tasks/{task_id}", user=user, json=body)


def _assert_forbidden(response: requests.Response, *fragments: str) -> None:
    assert response.status_code == 403, response.text
    body = response.json()
    assert set(body) == {"message", "exception"} and body["message"] == "Forbidden"
    for fragment in fragments:
        assert fragment in body["exception"]


def test_a_non_member_can_neither_claim_nor_complete(sandbox: OpenTextSandbox, business_key):
    instance = sandbox.start_process("dataset_release_signoff", business_key)
    (task,) = sandbox.tasks(processInstanceId=instance["id"])
    outsider = "qa@example.com"  # in the directory, but not a release manager

    _assert_forbidden(
        _act(sandbox, task["id"], outsider, action="complete", outcome="approved"),
        outsider,
        "release-managers",
        "not a candidate",
    )
    _assert_forbidden(
        _act(sandbox, task["id"], outsider, action="claim", assignee=outsider), "not a candidate"
    )
    _assert_forbidden(_act(sandbox, task["id"], None, action="complete", outcome="approved"))
    (still_open,) = sandbox.tasks(processInstanceId=instance["id"])
    assert still_open["assignee"] is None
    history = sandbox.request("GET", "/historic-task-instances", params={"processInstanceId": instance["id"]})
    assert [t["endTime"] for t in history.json()["_embedded"]["historicTaskInstances"]] == [None]

    sandbox.complete(task["id"], "approved", "rm@example.com")
    assert sandbox.historic_instance(instance["id"])["endActivityId"] == "end_approved"


def test_nobody_acts_in_another_users_name(sandbox: OpenTextSandbox, business_key):
    instance = sandbox.start_process("dataset_release_signoff", business_key)
    (task,) = sandbox.tasks(processInstanceId=instance["id"])
    sandbox.set_user_groups("deputy@example.com", ["release-managers"])

    _assert_forbidden(
        _act(sandbox, task["id"], "deputy@example.com", action="claim", assignee="rm@example.com"),
        "for 'rm@example.com'",
    )
    _assert_forbidden(
        _act(
            sandbox,
            task["id"],
            "deputy@example.com",
            action="complete",
            outcome="approved",
            assignee="rm@example.com",
        ),
        "as 'rm@example.com'",
    )
    sandbox.claim(task["id"], "rm@example.com")
    _assert_forbidden(
        _act(sandbox, task["id"], "deputy@example.com", action="complete", outcome="approved"),
        "assigned to 'rm@example.com'",
    )
    assert sandbox.tasks(processInstanceId=instance["id"])[0]["assignee"] == "rm@example.com"


def test_the_initiator_cannot_decide_where_the_model_says_so(sandbox: OpenTextSandbox, business_key):
    started = sandbox.request(
        "POST",
        "/process-instances",
        user="sme@example.com",
        json={
            "processDefinitionKey": "annotation_batch_approval",
            "businessKey": business_key,
            "variables": [{"name": "regulated", "value": False}],
        },
    )
    assert started.status_code == 201 and started.json()["startUserId"] == "sme@example.com"
    instance = started.json()
    (task,) = sandbox.tasks(processInstanceId=instance["id"])

    _assert_forbidden(
        _act(sandbox, task["id"], "sme@example.com", action="complete", outcome="approved"),
        "started process instance",
        "initiatorCanCompleteTask",
    )
    sandbox.set_user_groups("second.sme@example.com", ["annotation-sme"])
    sandbox.complete(task["id"], "approved", "second.sme@example.com")
    assert sandbox.historic_instance(instance["id"])["endActivityId"] == "end_approved"


def test_a_users_groups_come_from_the_directory(sandbox: OpenTextSandbox):
    sandbox.set_user_groups("two.hats@example.com", ["qa-reviewers", "release-managers"])
    body = sandbox.request("GET", "/identity/groups", params={"member": "two.hats@example.com"}).json()
    assert [g["id"] for g in body["_embedded"]["groups"]] == ["qa-reviewers", "release-managers"]
    nobody = sandbox.request("GET", "/identity/groups", params={"member": "nobody@example.com"}).json()
    assert "_embedded" not in nobody and nobody["page"]["totalElements"] == 0


def test_a_token_reaches_its_own_tenant_only(opentext_sandbox_factory):
    sandbox = opentext_sandbox_factory(tenant="tenant-a", other_tenants=("tenant-b",))
    sandbox.deploy_project_models()
    mine = sandbox.start_process("qa_review", "only-in-a")

    def token(tenant: str) -> requests.Response:
        return requests.post(
            f"{sandbox.url}/tenants/{tenant}/oauth2/token",
            json={
                "grant_type": "password",
                "client_id": sandbox.client_id,
                "client_secret": sandbox.client_secret,
                "username": "qa@example.com",
                "password": PASSWORD,
            },
            timeout=30,
        )

    other = {"Authorization": f"Bearer {token('tenant-b').json()['access_token']}"}
    seen = requests.get(f"{sandbox.api}/process-instances/{mine['id']}", headers=other, timeout=30)
    assert seen.status_code == 404
    tasks = requests.get(
        f"{sandbox.api}/tasks", params={"businessKey": "only-in-a"}, headers=other, timeout=30
    )
    assert tasks.json()["page"]["totalElements"] == 0
    models = requests.get(f"{sandbox.api}/runtime/models", headers=other, timeout=30).json()
    assert models["page"]["totalElements"] == 0

    unknown = token("tenant-c")
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_client"
    assert "tenant-c" in unknown.json()["error_description"]


def test_only_the_assignee_unclaims_a_task(sandbox: OpenTextSandbox, business_key):
    instance = sandbox.start_process("dataset_release_signoff", business_key)
    (task,) = sandbox.tasks(processInstanceId=instance["id"])
    sandbox.set_user_groups("deputy@example.com", ["release-managers"])
    sandbox.claim(task["id"], "rm@example.com")
    _assert_forbidden(
        _act(sandbox, task["id"], "deputy@example.com", action="claim", assignee=None),
        "claimed by 'rm@example.com'",
    )
    assert _act(sandbox, task["id"], "rm@example.com", action="claim", assignee=None).status_code == 200
    assert sandbox.tasks(processInstanceId=instance["id"])[0]["assignee"] is None
