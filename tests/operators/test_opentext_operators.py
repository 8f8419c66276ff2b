"""OpenText operators in real DAG runs (``dag.test()``) against a fresh OpenText sandbox over HTTP."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG, task

from prodigy_opentext.exceptions import OpenTextNotFoundError
from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook
from prodigy_opentext.operators.opentext import (
    OpenTextCommentOperator,
    OpenTextCompleteTaskOperator,
    OpenTextDeployModelsOperator,
    OpenTextStartProcessOperator,
)
from tests.fixtures.airflow_db import task_states
from tests.fixtures.opentext_sandbox import PASSWORD
from tests.hooks.test_opentext_contract import connection_json, model_xml

PROJECT_MODELS = sorted(
    path.name for path in (Path(__file__).resolve().parents[2] / "include" / "bpmn").iterdir()
)
INSTANCE = "{{ ti.xcom_pull(task_ids='start') }}"


@pytest.fixture
def opentext(opentext_sandbox: Any, airflow_db: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AIRFLOW_CONN_OPENTEXT_DEFAULT", connection_json(opentext_sandbox))
    sme = {"grant_type": "password", "username": "sme@example.com", "password": PASSWORD}
    monkeypatch.setenv("AIRFLOW_CONN_OPENTEXT_SME", connection_json(opentext_sandbox, **sme))
    return opentext_sandbox


def batch_approval_dag(dag_id: str, business_key: str, record: str) -> DAG:
    """Deploy the project's models, start a batch approval, comment, approve; record every XCom."""
    with DAG(dag_id, schedule=None, start_date=datetime(2025, 1, 1), params={"dataset": "ner_news"}) as dag:
        deploy = OpenTextDeployModelsOperator(task_id="deploy")
        start = OpenTextStartProcessOperator(
            task_id="start",
            process_definition_key="annotation_batch_approval",
            business_key=business_key,
            process_name="{{ params.dataset }} batch approval",
            variables={"dataset": "{{ params.dataset }}", "regulated": False},
        )
        comment = OpenTextCommentOperator(
            task_id="comment",
            process_instance_id=INSTANCE,
            message="Agreement report for {{ params.dataset }}",
        )
        complete = OpenTextCompleteTaskOperator(
            task_id="complete",
            process_instance_id=INSTANCE,
            task_definition_key="sme_review",
            outcome="approved",
            variables={"checked_examples": 50},
            assignee="sme@example.com",
            comment="Approved from the pipeline",
            opentext_conn_id="opentext_sme",
        )

        @task
        def record_results(deployed: Any, process_id: str, comment_id: str, completed: dict) -> None:
            Path(record).write_text(json.dumps([deployed, process_id, comment_id, completed]))

        deploy >> start >> comment >> complete
        record_results(deploy.output, start.output, comment.output, complete.output)
    return dag


def deploy_dag(dag_id: str, models: list[str], record: str) -> DAG:
    with DAG(dag_id, schedule=None, start_date=datetime(2025, 1, 1)) as dag:
        deploy = OpenTextDeployModelsOperator(task_id="deploy", models=models)

        @task
        def record_deployed(deployed: list[dict[str, Any]]) -> None:
            Path(record).write_text(json.dumps(deployed))

        record_deployed(deploy.output)
    return dag


def test_batch_approval_from_deploy_to_decision(opentext, run_dag, tmp_path) -> None:
    suffix = uuid.uuid4().hex[:8]
    record, business_key = tmp_path / "results.json", f"batch-{suffix}"
    run = run_dag(batch_approval_dag(dag_id=f"ops_{suffix}", business_key=business_key, record=str(record)))
    assert set(task_states(run).values()) == {"success"}, task_states(run)

    deployed, process_id, comment_id, completed = json.loads(record.read_text())
    assert sorted(f"{m['key']}.bpmn20.xml" for m in deployed) == PROJECT_MODELS
    assert {m["version"] for m in deployed} == {1}
    history = opentext.historic_instance(process_id)
    assert (history["businessKey"], history["name"], history["endActivityId"]) == (
        business_key,
        "ner_news batch approval",
        "end_approved",
    )
    assert completed == {
        "task_id": completed["task_id"],
        "outcome": "approved",
        "assignee": "sme@example.com",
    }
    hook = OpenTextWorkflowHook()
    (review,) = hook.historic_tasks(processInstanceId=process_id)
    assert (review["id"], review["assignee"], review["outcome"]) == (
        completed["task_id"],
        "sme@example.com",
        "approved",
    )
    comments = hook.list_comments(process_id)
    assert [c["message"] for c in comments] == ["Agreement report for ner_news", "Approved from the pipeline"]
    assert comments[0]["id"] == comment_id
    (instance,) = hook.historic_processes(processInstanceId=process_id, includeProcessVariables=True)
    values = {v["name"]: v["value"] for v in instance["variables"]}
    assert (values["dataset"], values["checked_examples"], values["sme_review_outcome"]) == (
        "ner_news",
        50,
        "approved",
    )


def test_deploy_operator_deploys_only_changed_models(opentext, run_dag, tmp_path) -> None:
    models, record = tmp_path / "models", tmp_path / "deployed.json"
    models.mkdir()
    key = f"deploy_{uuid.uuid4().hex[:8]}"
    (models / f"{key}.bpmn").write_text(model_xml(key))

    def deploy() -> list[dict[str, Any]]:
        dag_id = f"deploy_{uuid.uuid4().hex[:8]}"
        assert task_states(
            run_dag(deploy_dag(dag_id=dag_id, models=[str(models / "*.bpmn")], record=str(record)))
        ) == {
            "deploy": "success",
            "record_deployed": "success",
        }
        return json.loads(record.read_text())

    assert [(m["key"], m["version"], m["file"]) for m in deploy()] == [(key, 1, f"{key}.bpmn")]
    assert deploy() == []
    (models / f"{key}.bpmn").write_text(model_xml(key, task_name="Second review"))
    assert [(m["key"], m["version"]) for m in deploy()] == [(key, 2)]


def test_complete_names_the_process_and_task_it_could_not_find(opentext) -> None:
    opentext.deploy_project_models()
    process = opentext.start_process("qa_review", "qa-missing-task", {"dataset": "ner"})
    operator = OpenTextCompleteTaskOperator(
        task_id="complete",
        process_instance_id=process["id"],
        task_definition_key="sme_review",
        outcome="approved",
    )
    with pytest.raises(OpenTextNotFoundError, match=f"{process['id']} has no open task 'sme_review'"):
        operator.execute({})


def test_deploy_names_the_patterns_that_matched_nothing(tmp_path) -> None:
    operator = OpenTextDeployModelsOperator(task_id="deploy", models=[str(tmp_path / "*.bpmn")])
    with pytest.raises(FileNotFoundError, match=r"\*\.bpmn"):
        operator.execute({})
