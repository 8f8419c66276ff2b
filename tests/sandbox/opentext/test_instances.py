"""Process-instance resources: variables, comments, suspension, cancellation, delegation and history."""

from __future__ import annotations

import re

from tests.fixtures.opentext_sandbox import OpenTextSandbox

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$")


def test_instance_fields_and_variables(sandbox: OpenTextSandbox, business_key):
    started = sandbox.request(
        "POST",
        "/process-instances",
        json={
            "processDefinitionKey": "dataset_release_signoff",
            "businessKey": business_key,
            "name": "Release v3",
            "returnVariables": True,
            "variables": [
                {"name": "release_version", "value": 3},
                {"name": "manifest", "value": {"files": ["train.jsonl"]}, "type": "json"},
                {"name": "score", "value": 0.97, "type": "double"},
            ],
        },
    )
    assert started.status_code == 201
    instance = started.json()
    assert TIMESTAMP.match(instance["startTime"])
    assert (instance["activityId"], instance["ended"], instance["suspended"]) == (
        "release_signoff",
        False,
        False,
    )
    assert {v["name"]: (v["type"], v["value"]) for v in instance["variables"]} == {
        "release_version": ("integer", 3),
        "manifest": ("json", {"files": ["train.jsonl"]}),
        "score": ("double", 0.97),
    }
    path = f"/process-instances/{instance['id']}"
    fetched = sandbox.request("GET", path, params={"includeProcessVariables": "true"}).json()
    assert fetched["businessKey"] == business_key and len(fetched["variables"]) == 3

    created = sandbox.request("POST", f"{path}/variables", json=[{"name": "notes", "value": "ok"}])
    assert created.status_code == 201
    duplicate = sandbox.request("POST", f"{path}/variables", json=[{"name": "notes", "value": "again"}])
    assert duplicate.status_code == 409
    updated = sandbox.request("PUT", f"{path}/variables/release_version", json={"type": "long", "value": 4})
    assert updated.json() == {"name": "release_version", "type": "long", "value": 4, "scope": "global"}
    mismatch = sandbox.request("PUT", f"{path}/variables/release_version", json={"name": "other", "value": 1})
    assert mismatch.status_code == 400
    assert sandbox.request("GET", f"{path}/variables/notes").json()["value"] == "ok"
    assert sandbox.request("GET", f"{path}/variables/absent").status_code == 404
    names = [v["name"] for v in sandbox.request("GET", f"{path}/variables").json()]
    assert names == ["manifest", "notes", "release_version", "score"]

    (task,) = sandbox.tasks(processInstanceId=instance["id"])
    detail = sandbox.request("GET", f"/tasks/{task['id']}").json()
    assert {"id", "name", "assignee", "owner", "createTime", "dueDate", "priority", "formKey"} <= set(detail)
    assert (detail["formKey"], detail["priority"], detail["processInstanceId"]) == (
        "dataset-release-signoff",
        60,
        instance["id"],
    )
    assert TIMESTAMP.match(detail["dueDate"]) and detail["dueDate"] > detail["createTime"]
    assert {v["name"] for v in detail["variables"]} == set(names)


def test_comments_record_author_and_time(sandbox: OpenTextSandbox, business_key):
    instance = sandbox.start_process("qa_review", business_key)
    path = f"/process-instances/{instance['id']}/comments"
    added = sandbox.request(
        "POST", path, user="qa@example.com", json={"message": "Spans on row 4 are off by one."}
    )
    assert added.status_code == 201
    assert added.json()["author"] == "qa@example.com" and TIMESTAMP.match(added.json()["time"])
    assert sandbox.request("POST", path, json={"message": "  "}).status_code == 400
    (task,) = sandbox.tasks(processInstanceId=instance["id"])
    sandbox.complete(task["id"], "rework", "qa@example.com", comment="Please fix the spans.")
    comments = sandbox.request("GET", path).json()
    assert [(c["author"], c["message"]) for c in comments] == [
        ("qa@example.com", "Spans on row 4 are off by one."),
        ("qa@example.com", "Please fix the spans."),
    ]


def test_suspended_instances_refuse_work_until_activated(sandbox: OpenTextSandbox, business_key):
    instance = sandbox.start_process("dataset_release_signoff", business_key)
    path = f"/process-instances/{instance['id']}"
    (task,) = sandbox.tasks(processInstanceId=instance["id"])
    suspended = sandbox.request("PUT", path, json={"action": "suspend"})
    assert suspended.json()["suspended"] is True
    assert sandbox.request("PUT", path, json={"action": "suspend"}).status_code == 409
    assert sandbox.request("GET", f"/tasks/{task['id']}").json()["suspended"] is True
    refused = sandbox.request(
        "POST",
        f"/tasks/{task['id']}",
        user="rm@example.com",
        json={"action": "complete", "outcome": "approved"},
    )
    assert refused.status_code == 409
    assert sandbox.request("PUT", path, json={"action": "activate"}).json()["suspended"] is False
    sandbox.complete(task["id"], "approved", "rm@example.com")
    assert sandbox.historic_instance(instance["id"])["endActivityId"] == "end_approved"


def test_cancelled_instance_leaves_runtime_and_keeps_history(sandbox: OpenTextSandbox, business_key):
    instance = sandbox.start_process("regulated_content_access", business_key)
    (task,) = sandbox.tasks(processInstanceId=instance["id"])
    deleted = sandbox.request(
        "DELETE", f"/process-instances/{instance['id']}", params={"deleteReason": "withdrawn"}
    )
    assert deleted.status_code == 204
    assert sandbox.request("GET", f"/process-instances/{instance['id']}").status_code == 404
    assert sandbox.tasks(processInstanceId=instance["id"]) == []
    history = sandbox.historic_instance(instance["id"])
    assert (history["deleteReason"], history["endActivityId"]) == ("withdrawn", None)
    assert history["durationInMillis"] >= 0
    task_history = sandbox.request("GET", f"/historic-task-instances/{task['id']}").json()
    assert task_history["deleteReason"] == "withdrawn"
    runtime = sandbox.request("GET", "/process-instances", params={"businessKey": business_key}).json()
    assert runtime["page"]["totalElements"] == 0


def test_delegation_hands_over_and_back(sandbox: OpenTextSandbox, business_key):
    instance = sandbox.start_process("qa_review", business_key)
    (task,) = sandbox.tasks(processInstanceId=instance["id"])
    sandbox.set_user_groups("helper@example.com", [])
    sandbox.claim(task["id"], "qa@example.com")
    delegate = sandbox.request(
        "POST",
        f"/tasks/{task['id']}",
        user="qa@example.com",
        json={"action": "delegate", "assignee": "helper@example.com"},
    )
    assert delegate.status_code == 200
    delegated = sandbox.request("GET", f"/tasks/{task['id']}").json()
    assert (delegated["owner"], delegated["assignee"], delegated["delegationState"]) == (
        "qa@example.com",
        "helper@example.com",
        "pending",
    )
    helper = "helper@example.com"
    early = sandbox.request(
        "POST", f"/tasks/{task['id']}", user=helper, json={"action": "complete", "outcome": "pass"}
    )
    assert early.status_code == 400 and "resolved" in early.json()["exception"]
    not_theirs = sandbox.request(
        "POST", f"/tasks/{task['id']}", user="qa@example.com", json={"action": "resolve"}
    )
    assert not_theirs.status_code == 403
    resolved = sandbox.request("POST", f"/tasks/{task['id']}", user=helper, json={"action": "resolve"})
    assert resolved.status_code == 200
    assert sandbox.request("GET", f"/tasks/{task['id']}").json()["assignee"] == "qa@example.com"


def test_history_filters(sandbox: OpenTextSandbox, business_key):
    done = sandbox.start_process("dataset_release_signoff", business_key)
    open_one = sandbox.start_process("dataset_release_signoff", business_key)
    (task,) = sandbox.tasks(processInstanceId=done["id"])
    sandbox.complete(task["id"], "approved", "rm@example.com")

    def ids(path: str, **params: str) -> list[str]:
        body = sandbox.request("GET", path, params={"businessKey": business_key, **params}).json()
        return [item["id"] for items in body.get("_embedded", {}).values() for item in items]

    assert ids("/historic-process-instances") == [done["id"], open_one["id"]]
    assert ids("/historic-process-instances", finished="true") == [done["id"]]
    assert ids("/historic-process-instances", finished="false") == [open_one["id"]]
    assert ids("/historic-task-instances", taskAssignee="rm@example.com") == [task["id"]]
    assert ids(
        "/historic-task-instances", finished="true", processDefinitionKey="dataset_release_signoff"
    ) == [task["id"]]
    with_variables = sandbox.request(
        "GET",
        "/historic-process-instances",
        params={"processInstanceId": done["id"], "includeProcessVariables": "true"},
    ).json()["_embedded"]["historicProcessInstances"][0]
    assert {"outcome": "approved", "release_signoff_outcome": "approved"}.items() <= {
        v["name"]: v["value"] for v in with_variables["variables"]
    }.items()
    assert sandbox.request("GET", "/historic-task-instances", params={"finished": "maybe"}).status_code == 400


def test_candidate_or_assigned_follows_group_membership(sandbox: OpenTextSandbox, business_key):
    sandbox.set_user_groups("signer@example.com", ["release-managers"])
    instance = sandbox.start_process("dataset_release_signoff", business_key)
    (task,) = sandbox.tasks(processInstanceId=instance["id"])

    def visible_to(user: str) -> bool:
        return task["id"] in {
            t["id"] for t in sandbox.tasks(candidateOrAssigned=user, businessKey=business_key)
        }

    assert visible_to("signer@example.com") and visible_to("rm@example.com")
    assert not visible_to("outsider@example.com")
    sandbox.claim(task["id"], "signer@example.com")
    assert visible_to("signer@example.com") and not visible_to("rm@example.com")
    assert sandbox.tasks(candidateGroup="release-managers", businessKey=business_key) == []
    assert [t["id"] for t in sandbox.tasks(assignee="signer@example.com", businessKey=business_key)] == [
        task["id"]
    ]
