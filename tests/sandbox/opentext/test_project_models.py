"""Every project BPMN model, deployed to the sandbox over HTTP and driven to each of its end states."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator

from tests.fixtures.opentext_sandbox import PROJECT_MODELS, OpenTextSandbox, poll_until

FLOWABLE = "{http://flowable.org/bpmn}"
BPMN = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"

# key -> {user task id: candidate group}, end event ids
MODEL_CONTRACT = {
    "annotation_batch_approval": (
        {"sme_review": "annotation-sme", "compliance_review": "compliance-officers"},
        {"end_approved", "end_rejected"},
    ),
    "label_dispute_resolution": (
        {
            "senior_review": "senior-annotators",
            "lead_review": "annotation-leads",
            "check_decisions": "airflow-service",
        },
        {"end_resolved"},
    ),
    "qa_review": (
        {
            "qa_check": "qa-reviewers",
            "record_qa": "airflow-service",
            "lead_review": "annotation-leads",
            "record_lead": "airflow-service",
        },
        {"end_passed", "end_rework", "end_lead_accepted", "end_lead_rejected"},
    ),
    "annotation_request_intake": (
        {
            "request_approval": "data-owners",
            "provision_dataset": "airflow-service",
            "track_progress": "airflow-service",
        },
        {"end_annotated", "end_source_refused", "end_rejected"},
    ),
    "regulated_content_access": (
        {
            "hold_content": "airflow-service",
            "access_approval": "compliance-officers",
            "load_content": "airflow-service",
            "track_progress": "airflow-service",
            "await_release": "airflow-service",
        },
        {"end_closed", "end_refused", "end_denied"},
    ),
    "model_improvement_request": (
        {
            "improvement_approval": "ml-leads",
            "add_examples": "airflow-service",
            "track_progress": "airflow-service",
            "await_release": "airflow-service",
        },
        {"end_delivered", "end_refused", "end_rejected"},
    ),
    "dataset_release_signoff": ({"release_signoff": "release-managers"}, {"end_approved", "end_rejected"}),
}

ACCEPTED = {"decisions_accepted": True}
SENT_BACK = {"decisions_accepted": False, "return_to": "senior_review"}
QA_PASSED = {"qa_result": "passed"}

# (process key, start variables, [(task it waits at, outcome to give[, variables])], end event reached)
PATHS = [
    ("annotation_batch_approval", {"regulated": False}, [("sme_review", "approved")], "end_approved"),
    ("annotation_batch_approval", {"regulated": False}, [("sme_review", "rejected")], "end_rejected"),
    (
        "annotation_batch_approval",
        {"regulated": True},
        [("sme_review", "approved"), ("compliance_review", "approved")],
        "end_approved",
    ),
    (
        "annotation_batch_approval",
        {"regulated": True},
        [("sme_review", "approved"), ("compliance_review", "rejected")],
        "end_rejected",
    ),
    ("annotation_batch_approval", {"regulated": True}, [("sme_review", "rejected")], "end_rejected"),
    (
        "label_dispute_resolution",
        {"escalation_after": "PT4H"},
        [("senior_review", "resolved"), ("check_decisions", None, ACCEPTED)],
        "end_resolved",
    ),
    (
        "label_dispute_resolution",
        {"escalation_after": "PT4H"},
        [
            ("senior_review", "resolved"),
            ("check_decisions", None, SENT_BACK),
            ("senior_review", "resolved"),
            ("check_decisions", None, ACCEPTED),
        ],
        "end_resolved",
    ),
    ("qa_review", {"rework_round": 1}, [("qa_check", None), ("record_qa", None, QA_PASSED)], "end_passed"),
    (
        "qa_review",
        {"rework_round": 1},
        [
            ("qa_check", None),
            ("record_qa", None, {"qa_result": "sent_back"}),
            ("qa_check", None),
            ("record_qa", None, {"qa_result": "rework"}),
        ],
        "end_rework",
    ),
    (
        "qa_review",
        {"rework_round": 3},
        [
            ("qa_check", None),
            ("record_qa", None, {"qa_result": "escalated"}),
            ("lead_review", "accepted"),
            ("record_lead", None, {"lead_result": "sent_back"}),
            ("lead_review", "accepted"),
            ("record_lead", None, {"lead_result": "accepted"}),
        ],
        "end_lead_accepted",
    ),
    (
        "qa_review",
        {"rework_round": 3},
        [
            ("qa_check", None),
            ("record_qa", None, {"qa_result": "escalated"}),
            ("lead_review", "rejected"),
            ("record_lead", None, {"lead_result": "rejected"}),
        ],
        "end_lead_rejected",
    ),
    (
        "annotation_request_intake",
        {"source": "s3://bucket/tickets.jsonl"},
        [
            ("request_approval", "approved"),
            ("provision_dataset", None, {"provisioned": True}),
            ("track_progress", None),
        ],
        "end_annotated",
    ),
    (
        "annotation_request_intake",
        {"source": "s3://bucket/tickets.jsonl"},
        [("request_approval", "approved"), ("provision_dataset", None, {"provisioned": False})],
        "end_source_refused",
    ),
    ("annotation_request_intake", {}, [("request_approval", "rejected")], "end_rejected"),
    (
        "regulated_content_access",
        {"classification": "PHI"},
        [
            ("hold_content", None, {"held": True}),
            ("access_approval", "granted"),
            ("load_content", None, {"provisioned": True}),
            ("track_progress", None),
            ("await_release", None),
        ],
        "end_closed",
    ),
    (
        "regulated_content_access",
        {"classification": "PHI"},
        [("hold_content", None, {"held": True}), ("access_approval", "denied")],
        "end_denied",
    ),
    (
        "regulated_content_access",
        {"classification": "PHI"},
        [("hold_content", None, {"held": False})],
        "end_refused",
    ),
    (
        "regulated_content_access",
        {"classification": "PHI"},
        [
            ("hold_content", None, {"held": True}),
            ("access_approval", "granted"),
            ("load_content", None, {"provisioned": False}),
        ],
        "end_refused",
    ),
    (
        "model_improvement_request",
        {},
        [
            ("improvement_approval", "approved"),
            ("add_examples", None, {"provisioned": True, "new_dataset": True}),
            ("track_progress", None),
            ("await_release", None),
        ],
        "end_delivered",
    ),
    (
        "model_improvement_request",
        {},
        [
            ("improvement_approval", "approved"),
            ("add_examples", None, {"provisioned": True, "new_dataset": False}),
            ("await_release", None),
        ],
        "end_delivered",
    ),
    (
        "model_improvement_request",
        {},
        [("improvement_approval", "approved"), ("add_examples", None, {"provisioned": False})],
        "end_refused",
    ),
    ("model_improvement_request", {}, [("improvement_approval", "rejected")], "end_rejected"),
    ("dataset_release_signoff", {}, [("release_signoff", "approved")], "end_approved"),
    ("dataset_release_signoff", {}, [("release_signoff", "rejected")], "end_rejected"),
]


def _model_path(key: str) -> Path:
    return PROJECT_MODELS / f"{key}.bpmn20.xml"


def test_project_ships_one_schema_valid_model_per_process_key():
    assert sorted(p.name for p in PROJECT_MODELS.glob("*.bpmn20.xml")) == sorted(
        f"{key}.bpmn20.xml" for key in MODEL_CONTRACT
    )
    validator = BpmnValidator()
    for key, (groups, ends) in MODEL_CONTRACT.items():
        document = etree.parse(str(_model_path(key)))
        validator.validate(document)
        processes = document.findall(f"{BPMN}process")
        assert [p.get("id") for p in processes] == [key]
        user_tasks = {
            t.get("id"): t.get(f"{FLOWABLE}candidateGroups") for t in document.iter(f"{BPMN}userTask")
        }
        assert user_tasks == groups
        for task in document.iter(f"{BPMN}userTask"):  # whoever asks for a decision cannot give it
            people_decide = task.get(f"{FLOWABLE}candidateGroups") != "airflow-service"
            assert (task.get(f"{FLOWABLE}initiatorCanCompleteTask") == "false") is people_decide, task.get(
                "id"
            )
        assert {e.get("id") for e in document.iter(f"{BPMN}endEvent")} == ends
        for condition in document.iter(f"{BPMN}conditionExpression"):
            assert condition.text.startswith("${") and condition.text.endswith("}"), condition.text


@pytest.mark.parametrize(("key", "variables", "steps", "end"), PATHS, ids=[f"{p[0]}-{p[3]}" for p in PATHS])
def test_model_reaches_end_state(sandbox: OpenTextSandbox, business_key, key, variables, steps, end):
    instance = sandbox.start_process(key, business_key, variables)
    groups = MODEL_CONTRACT[key][0]
    for task_key, outcome, *variables in steps:
        (task,) = sandbox.tasks(processInstanceId=instance["id"])
        assert task["taskDefinitionKey"] == task_key
        assert task["candidateGroups"] == [groups[task_key]]
        user = sandbox.member_of(groups[task_key])
        sandbox.complete(task["id"], outcome, user, variables=variables[0] if variables else None)
    assert sandbox.tasks(processInstanceId=instance["id"]) == []
    assert sandbox.request("GET", f"/process-instances/{instance['id']}").status_code == 404
    history = sandbox.historic_instance(instance["id"])
    assert history["endActivityId"] == end
    assert history["endTime"] is not None and history["deleteReason"] is None
    tasks = sandbox.request(
        "GET", "/historic-task-instances", params={"processInstanceId": instance["id"], "sort": "startTime"}
    ).json()["_embedded"]["historicTaskInstances"]
    assert [(t["taskDefinitionKey"], t["outcome"], t["assignee"]) for t in tasks] == [
        (task_key, outcome, sandbox.member_of(groups[task_key]) or sandbox.client_id)
        for task_key, outcome, *_ in steps
    ]


def test_intake_starts_from_the_annotation_request_message(sandbox: OpenTextSandbox, business_key):
    response = sandbox.request(
        "POST",
        "/process-instances",
        json={
            "message": "annotationRequest",
            "businessKey": business_key,
            "variables": [{"name": "labels", "value": ["PERSON", "ORG"], "type": "json"}],
        },
    )
    assert response.status_code == 201, response.text
    instance = response.json()
    assert instance["processDefinitionKey"] == "annotation_request_intake"
    (task,) = sandbox.tasks(processInstanceId=instance["id"])
    assert task["taskDefinitionKey"] == "request_approval"
    assert sandbox.historic_instance(instance["id"])["startActivityId"] == "start_by_message"


def test_dispute_escalates_to_leads_when_the_clock_passes_the_deadline(opentext_sandbox: OpenTextSandbox):
    opentext_sandbox.deploy(_model_path("label_dispute_resolution"))
    instance = opentext_sandbox.start_process(
        "label_dispute_resolution", "dispute-1", {"escalation_after": "PT4H"}
    )
    (senior,) = opentext_sandbox.tasks(processInstanceId=instance["id"])
    assert senior["taskDefinitionKey"] == "senior_review"

    opentext_sandbox.advance_clock(3 * 3600)
    assert [t["id"] for t in opentext_sandbox.tasks(processInstanceId=instance["id"])] == [senior["id"]]

    opentext_sandbox.advance_clock(3600 + 1)
    (lead,) = opentext_sandbox.tasks(processInstanceId=instance["id"])
    assert (lead["taskDefinitionKey"], lead["candidateGroups"]) == ("lead_review", ["annotation-leads"])
    interrupted = opentext_sandbox.request("GET", f"/historic-task-instances/{senior['id']}").json()
    assert interrupted["deleteReason"] == "boundary event (escalation_timer)"
    assert interrupted["endTime"] is not None

    opentext_sandbox.complete(lead["id"], "resolved", "lead@example.com")
    (check,) = opentext_sandbox.tasks(processInstanceId=instance["id"])
    back = {"decisions_accepted": False, "return_to": "lead_review"}
    opentext_sandbox.complete(check["id"], None, None, variables=back)
    (again,) = opentext_sandbox.tasks(processInstanceId=instance["id"])
    assert again["taskDefinitionKey"] == "lead_review", "sent back to the leads, not the seniors"
    opentext_sandbox.complete(again["id"], "resolved", "lead@example.com")
    (check,) = opentext_sandbox.tasks(processInstanceId=instance["id"])
    opentext_sandbox.complete(check["id"], None, None, variables={"decisions_accepted": True})
    assert opentext_sandbox.historic_instance(instance["id"])["endActivityId"] == "end_resolved"


def test_dispute_timer_fires_on_its_own(sandbox: OpenTextSandbox, business_key):
    instance = sandbox.start_process("label_dispute_resolution", business_key, {"escalation_after": "PT1S"})
    lead = poll_until(
        lambda: [
            t
            for t in sandbox.tasks(processInstanceId=instance["id"])
            if t["taskDefinitionKey"] == "lead_review"
        ],
        what="the escalation timer to hand the dispute to the leads",
    )
    assert len(lead) == 1
    assert [t["taskDefinitionKey"] for t in sandbox.tasks(processInstanceId=instance["id"])] == [
        "lead_review"
    ]


def test_dispute_needs_its_escalation_duration(sandbox: OpenTextSandbox):
    response = sandbox.request(
        "POST", "/process-instances", json={"processDefinitionKey": "label_dispute_resolution"}
    )
    assert response.status_code == 400
    assert "escalation_after" in response.json()["exception"]


def test_batch_approval_without_regulated_flag_is_refused_and_task_stays_open(sandbox: OpenTextSandbox):
    instance = sandbox.start_process("annotation_batch_approval")
    (task,) = sandbox.tasks(processInstanceId=instance["id"])
    sme = sandbox.member_of("annotation-sme")
    response = sandbox.request(
        "POST", f"/tasks/{task['id']}", user=sme, json={"action": "complete", "outcome": "approved"}
    )
    assert response.status_code == 400
    assert response.json()["message"] == "Bad request"
    assert "regulated" in response.json()["exception"]
    assert [t["id"] for t in sandbox.tasks(processInstanceId=instance["id"])] == [task["id"]]

    response = sandbox.request(
        "POST", f"/tasks/{task['id']}", user=sme, json={"action": "complete", "outcome": "maybe"}
    )
    assert response.status_code == 400
    assert "sme_decision" in response.json()["exception"]


def test_redeploy_makes_a_new_version_and_latest_is_used(opentext_sandbox: OpenTextSandbox):
    first = opentext_sandbox.deploy(_model_path("qa_review"))
    second = opentext_sandbox.deploy(_model_path("qa_review"))
    assert (first["version"], second["version"]) == (1, 2)
    assert first["processDefinitionId"] != second["processDefinitionId"]
    listed = opentext_sandbox.request(
        "GET", "/runtime/models", params={"key": "qa_review", "latestVersion": "true"}
    )
    assert [m["version"] for m in listed.json()["_embedded"]["models"]] == [2]
    everything = opentext_sandbox.request("GET", "/runtime/models", params={"key": "qa_review"}).json()
    assert everything["page"]["totalElements"] == 2
    instance = opentext_sandbox.start_process("qa_review")
    assert instance["processDefinitionId"] == second["processDefinitionId"]
    by_id = opentext_sandbox.request(
        "POST", "/process-instances", json={"processDefinitionId": first["processDefinitionId"]}
    )
    assert by_id.status_code == 201 and by_id.json()["processDefinitionVersion"] == 1
