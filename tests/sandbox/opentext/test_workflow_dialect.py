"""A model in OpenText's ``workflow:`` dialect, deployed base64-encoded as OpenText's examples do."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.fixtures.opentext_sandbox import OpenTextSandbox

MODEL = Path(__file__).parent / "models" / "contract_approval.bpmn20.xml"


@pytest.fixture(scope="module")
def contract_model(opentext_sandbox_session: OpenTextSandbox) -> dict:
    encoded = base64.b64encode(MODEL.read_bytes()).decode()
    response = opentext_sandbox_session.request(
        "POST",
        "/runtime/models",
        json={"modelType": "xml", "modelContent": encoded, "modelId": "contract-approval"},
    )
    assert response.status_code == 201, response.text
    return response.json()


def _start(sandbox: OpenTextSandbox, business_key: str, value: int) -> dict:
    response = sandbox.request(
        "POST",
        "/process-instances",
        json={
            "message": "contractApproval",
            "businessKey": business_key,
            "variables": [
                {"name": "doc", "type": "json", "value": {"name": "Lease", "properties": {"value": value}}},
                {"name": "manager_group", "value": "contract-managers"},
            ],
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_deployment_reads_the_message_start(contract_model):
    assert (contract_model["key"], contract_model["id"], contract_model["startMessages"]) == (
        "approveContract",
        "contract-approval",
        ["contractApproval"],
    )


@pytest.mark.parametrize(
    ("approval_status", "end"), [("rejected", "end_rejected"), ("approved", "end_approved")]
)
def test_large_contract_goes_to_the_group_named_in_a_variable(
    sandbox: OpenTextSandbox, contract_model, business_key, approval_status, end
):
    instance = _start(sandbox, business_key, 250_000)
    (task,) = sandbox.tasks(processInstanceId=instance["id"])
    assert (task["name"], task["candidateGroups"], task["formKey"], task["priority"]) == (
        "manager approval",
        ["contract-managers"],
        "contract-approval",
        90,
    )
    sandbox.set_user_groups("manager@example.com", ["contract-managers"])
    sandbox.complete(
        task["id"], approval_status, "manager@example.com", variables={"approvalStatus": approval_status}
    )
    assert sandbox.historic_instance(instance["id"])["endActivityId"] == end


def test_small_contract_takes_the_default_flow(sandbox: OpenTextSandbox, contract_model, business_key):
    instance = _start(sandbox, business_key, 500)
    assert instance["ended"] is True and instance["completed"] is True
    assert sandbox.historic_instance(instance["id"])["endActivityId"] == "end_auto_approved"


def test_message_only_process_cannot_start_by_key(sandbox: OpenTextSandbox, contract_model):
    response = sandbox.request("POST", "/process-instances", json={"processDefinitionKey": "approveContract"})
    assert response.status_code == 400
    assert "contractApproval" in response.json()["exception"]


def test_bad_models_are_refused_with_the_reason(sandbox: OpenTextSandbox):
    cases = {
        "not xml, not base64 !": "neither BPMN XML nor base64",
        "<definitions": "not well-formed",
        "<html/>": "not a BPMN 2.0 document",
    }
    for content, reason in cases.items():
        response = sandbox.request(
            "POST", "/runtime/models", json={"modelType": "xml", "modelContent": content}
        )
        assert response.status_code == 400 and reason in response.json()["exception"], response.text
    unsupported = sandbox.request("POST", "/runtime/models", json={"modelType": "json", "modelContent": "{}"})
    assert unsupported.status_code == 400 and "json" in unsupported.json()["exception"]
