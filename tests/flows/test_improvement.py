"""Model improvement requests (flow 8) end to end: ``dag.test()`` against both sandboxes.

Requests name a model, what it gets wrong and example inputs; once an ML lead approves them in OpenText
their examples become tasks tagged with the request, in a new dataset or in the Airflow-provisioned one a
request names; a request that cannot be taken is refused naming why; a request is completed with the
release version and the manifest's sha256 once a published release holds every one of its tasks.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from prodigy_opentext.core.export import file_digest
from prodigy_opentext.flows.improvement import IMPROVEMENT_PROCESS
from tests.fixtures.airflow_db import task_states
from tests.fixtures.opentext_sandbox import PROJECT_MODELS, OpenTextSandbox
from tests.flows.support import ANNOTATORS, batch_version, publish
from tests.flows.test_intake import comments_of, variables_of
from tests.hooks.test_opentext_contract import connection_json

ML_LEAD = "ml@example.com"
MISSED = [
    "Lululemon leggings sold out again.",
    "Patagonia jackets are on sale.",
    "I returned the Asics shoes.",
]


def improvement(sandbox: OpenTextSandbox, outcome: str = "approved", **variables: Any) -> str:
    values = {
        "model": "brand-ner v3",
        "problem": "misses sportswear brands",
        "policy_reference": "POL-7",
        **variables,
    }
    instance = sandbox.start_process(IMPROVEMENT_PROCESS, f"improve-{uuid.uuid4().hex[:8]}", values)
    (task,) = sandbox.tasks(processInstanceId=instance["id"])
    sandbox.complete(task["id"], outcome, ML_LEAD, comment=f"{outcome} by the ML lead")
    return instance["id"]


@pytest.mark.slow
def test_examples_become_tasks_and_the_request_closes_with_the_release_that_holds_them(
    flows, opentext_sandbox_factory, monkeypatch, prodigy_server, run_prodigy
) -> None:
    from airflow.models.dagrun import DagRun

    from prodigy_opentext.exceptions import DatasetNotFoundError
    from prodigy_opentext.flows.release import resolve_release_target, stage_release_data
    from prodigy_opentext.hooks.prodigy import ProdigyHook

    sandbox = opentext_sandbox_factory()
    sandbox.deploy(PROJECT_MODELS / f"{IMPROVEMENT_PROCESS}.bpmn20.xml")
    monkeypatch.setenv("AIRFLOW_CONN_OPENTEXT_DEFAULT", connection_json(sandbox))
    dags, data = flows["dags"], flows["data"]
    run_prodigy("stats")
    hook, tag = ProdigyHook(), uuid.uuid4().hex[:6]

    provisioned, stream = f"brands_{tag}", data / "intake" / "streams" / f"brands_{tag}" / "tasks.jsonl"
    stream.parent.mkdir(parents=True)
    stream.write_text(json.dumps({"text": MISSED[0], "_input_hash": 1, "_task_hash": 11}) + "\n")
    meta = {"labels": ["BRAND"], "annotator_emails": ANNOTATORS, "task_type": "ner", "stream": str(stream)}
    hook.add_dataset(provisioned, {**meta, "annotations_per_task": 1, "tasks": 1})
    hook.add_dataset(f"nostream_{tag}", {"labels": ["BRAND"]})

    new = improvement(
        sandbox, examples=MISSED, labels=["BRAND"], annotators=list(ANNOTATORS.values()), task_type="ner",
        dataset=f"improve_{tag}", annotations_per_task=2,
    )  # fmt: skip
    joins = improvement(sandbox, examples=MISSED[1:], dataset=provisioned)
    refused = improvement(sandbox, examples=MISSED, dataset=f"nostream_{tag}")
    nike = {"text": "Nike", "spans": [{"start": 0, "end": 4, "label": "ORG"}]}
    foreign = improvement(sandbox, examples=[nike], dataset=provisioned)
    rejected = improvement(sandbox, "rejected", examples=MISSED, dataset=f"rejected_{tag}", labels=["BRAND"])

    first = dags["model_improvement_requests"].test()
    assert first.state == "success", task_states(first)
    created = hook.get_meta(f"improve_{tag}")
    assert created["request"]["process_instance_id"] == new and created["tasks"] == 3
    tasks = [json.loads(line) for line in Path(created["stream"]).read_text().splitlines()]
    assert [t["text"] for t in tasks] == MISSED
    assert all(t["meta"]["request"] == new and t["meta"]["policy_reference"] == "POL-7" for t in tasks)
    joined = [json.loads(line)["text"] for line in stream.read_text().splitlines()]
    assert joined == MISSED, "the named dataset's stream gains the examples it did not hold"
    assert variables_of(sandbox, joins)["new_dataset"] is False
    assert any("no task stream Airflow provisioned" in c for c in comments_of(sandbox, refused))
    assert any("label(s) ORG" in c for c in comments_of(sandbox, foreign))
    assert variables_of(sandbox, refused)["_end"] == variables_of(sandbox, foreign)["_end"] == "end_refused"
    assert variables_of(sandbox, rejected)["_end"] == "end_rejected"
    with pytest.raises(DatasetNotFoundError):
        hook.get_meta(f"rejected_{tag}")

    url = prodigy_server(f"improve_{tag}", created["stream"], feed_overlap=True)
    run_prodigy(
        "annotate", "--url", url, "--dataset", f"improve_{tag}", "--sessions", ",".join(ANNOTATORS),
        "--disagree", 0, "--reject", 0, "--ignore", 0, "--flag", 0,
    )  # fmt: skip
    second = dags["model_improvement_requests"].test()
    assert second.state == "success", task_states(second)
    version = batch_version(f"improve_{tag}")
    assert DagRun.find(dag_id="label_escalation", run_id=f"escalation__improve_{tag}__{version}")
    waiting = sandbox.tasks(processInstanceId=new)
    assert [t["taskDefinitionKey"] for t in waiting] == ["await_release"], "no release holds its tasks yet"

    staged = stage_release_data(
        resolve_release_target(f"improve_{tag}", version),
        data / "staging",
        "manual__improve",
        data / "audit" / "governance.jsonl",
    )
    release = publish(staged, data, "manual__improve")
    third = dags["model_improvement_requests"].test()
    assert third.state == "success", task_states(third)
    done = variables_of(sandbox, new)
    assert done["_end"] == "end_delivered" and done["release_version"] == version
    assert done["manifest_sha256"] == file_digest(release["manifest"]).sha256 == release["manifest_sha256"]
    assert [t["taskDefinitionKey"] for t in sandbox.tasks(processInstanceId=joins)] == ["await_release"]

    again = dags["model_improvement_requests"].test()
    assert again.state == "success", task_states(again)
    assert [json.loads(line)["text"] for line in stream.read_text().splitlines()] == MISSED, "nothing twice"
    assert len(Path(created["stream"]).read_text().splitlines()) == 3
