"""State survives a restart of the sandbox process: models, instances, tasks, variables, comments,
history, tokens, the clock and pending timers."""

from __future__ import annotations

from tests.fixtures.opentext_sandbox import PROJECT_MODELS, OpenTextSandbox


def test_restart_keeps_every_kind_of_state(opentext_sandbox: OpenTextSandbox):
    sandbox = opentext_sandbox
    sandbox.deploy_project_models()
    approval = sandbox.start_process(
        "annotation_batch_approval", "batch-7", {"regulated": True, "dataset": "ner_v7"}
    )
    (sme,) = sandbox.tasks(processInstanceId=approval["id"])
    sandbox.complete(sme["id"], "approved", "sme@example.com", comment="Labels look right.")
    (compliance,) = sandbox.tasks(processInstanceId=approval["id"])
    sandbox.claim(compliance["id"], "officer@example.com")
    finished = sandbox.start_process("dataset_release_signoff", "signoff-7")
    (signoff,) = sandbox.tasks(processInstanceId=finished["id"])
    sandbox.complete(signoff["id"], "approved", "rm@example.com")
    dispute = sandbox.start_process("label_dispute_resolution", "dispute-7", {"escalation_after": "PT2H"})
    sandbox.advance_clock(3600)
    token_before = sandbox.token()

    sandbox.restart()

    assert sandbox.token() == token_before
    assert sandbox.request("GET", "/tasks").status_code == 200, (
        "a token issued before the restart still works"
    )
    models = sandbox.request("GET", "/runtime/models", params={"latestVersion": "true", "count": 20}).json()
    assert models["page"]["totalElements"] == len(list(PROJECT_MODELS.glob("*.bpmn20.xml")))
    running = sandbox.request(
        "GET", f"/process-instances/{approval['id']}", params={"includeProcessVariables": "true"}
    )
    assert running.json()["activityId"] == "compliance_review"
    assert {v["name"]: v["value"] for v in running.json()["variables"]}["sme_review_outcome"] == "approved"
    (still_open,) = sandbox.tasks(processInstanceId=approval["id"])
    assert (still_open["id"], still_open["assignee"]) == (compliance["id"], "officer@example.com")
    comments = sandbox.request("GET", f"/process-instances/{approval['id']}/comments").json()
    assert [(c["author"], c["message"]) for c in comments] == [("sme@example.com", "Labels look right.")]
    assert sandbox.historic_instance(finished["id"])["endActivityId"] == "end_approved"
    history = sandbox.request("GET", f"/historic-task-instances/{sme['id']}").json()
    assert (history["assignee"], history["outcome"]) == ("sme@example.com", "approved")

    # The engine state was restored: the approval continues and the dispute's timer still runs,
    # an hour closer than at start because the clock offset survived too.
    sandbox.complete(compliance["id"], "approved", "officer@example.com")
    assert sandbox.historic_instance(approval["id"])["endActivityId"] == "end_approved"
    assert [t["taskDefinitionKey"] for t in sandbox.tasks(processInstanceId=dispute["id"])] == [
        "senior_review"
    ]
    sandbox.advance_clock(3600 + 1)
    assert [t["taskDefinitionKey"] for t in sandbox.tasks(processInstanceId=dispute["id"])] == ["lead_review"]
