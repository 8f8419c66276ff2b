"""Helpers of the flow tests: a reviewer acting in OpenText, what OpenText and Airflow recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.fixtures.background import acting_in_background
from tests.fixtures.opentext_sandbox import poll_until

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
DEMO_TASKS = REPO / "include" / "demo" / "tasks.jsonl"
REVIEW_TIMEOUT = 180
SME = "sme@example.com"
RELEASE_MANAGER = "rm@example.com"
ANNOTATORS = {"alice": "alice@example.com", "bob": "bob@example.com"}
"""The simulated annotators' sessions and who they are in OpenText (the datasets' ``annotator_emails``)."""


def reviewer(sandbox, key: str, outcome: str, user: str, comment: str):
    """While the block runs, a reviewer decides the open task of the process with businessKey ``key``."""

    def decide() -> None:
        (task,) = poll_until(
            lambda: sandbox.tasks(processInstanceBusinessKey=key), REVIEW_TIMEOUT, 0.5, f"a task of {key}"
        )
        sandbox.complete(task["id"], outcome, user, comment=comment)

    return acting_in_background(decide, timeout=REVIEW_TIMEOUT)


def historic(sandbox, process_key: str, key: str) -> list[dict[str, Any]]:
    body = sandbox.request(
        "GET", "/historic-process-instances", params={"processDefinitionKey": process_key, "businessKey": key}
    ).json()
    return body.get("_embedded", {}).get("historicProcessInstances", [])


def batch_version(dataset: str) -> str:
    from prodigy_opentext.hooks.prodigy import ProdigyHook

    return f"b{ProdigyHook().last_example_id(dataset)}"


def release_runs(dataset: str, version: str) -> list[Any]:
    from airflow.models.dagrun import DagRun

    return DagRun.find(dag_id="dataset_release", run_id=f"release__{dataset}__{version}")
