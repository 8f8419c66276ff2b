"""QA and rework (flow 6) end to end: ``dag.test()`` against both sandboxes, QA reviewers in OpenText.

A batch where bob answers half of his items wrongly: round 1 is judged through the sandbox (sent back once
for a reviewer who annotated the batch, once for a judgement left out), fails, and sends bob's answers back
to him as a rework dataset with the instructions in each task's meta; bob redoes them through the Prodigy
sandbox; round 2 passes and requests the batch's approval; the release holds the corrections. A second
batch fails its only round and goes to the annotation leads, whose acceptance counts.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from prodigy_opentext.core.audit import AuditLog
from prodigy_opentext.core.qa import QA_PROCESS
from tests.fixtures.airflow_db import task_states
from tests.fixtures.opentext_sandbox import OpenTextSandbox, poll_until
from tests.flows.support import ANNOTATORS, batch_version, publish
from tests.hooks.prodigy_support import sample_rows, write_jsonl
from tests.hooks.test_opentext_contract import connection_json

QA_REVIEWER, LEAD = "qa@example.com", "lead@example.com"
ITEMS, BOB_WRONG = 30, 15
INSTRUCTIONS = "Re-read the documentation guideline before answering."


def truth(number: int) -> str:
    return "accept" if number % 2 else "reject"


def planted_dataset(name: str) -> dict[Any, int]:
    """Alice answers every item right, bob the first ``BOB_WRONG`` wrong; returns item numbers by input
    hash."""
    from prodigy_opentext.hooks.prodigy import ProdigyHook

    rows = {
        n: {k: v for k, v in row.items() if k != "answer"}
        for n, row in enumerate(sample_rows("textcat_docs_issues", ITEMS), 1)
    }
    flipped = {"accept": "reject", "reject": "accept"}
    answers = [
        {
            **row,
            "answer": flipped[truth(n)] if who == "bob" and n <= BOB_WRONG else truth(n),
            "_annotator_id": f"{name}-{who}",
            "_session_id": f"{name}-{who}",
            "_timestamp": 1_700_000_000 + n,
        }
        for n, row in rows.items()
        for who in ANNOTATORS
    ]
    hook = ProdigyHook()
    hook.add_examples(name, answers)
    hook.set_meta(name, {"labels": ["DOCUMENTATION"], "annotator_emails": ANNOTATORS})
    return {row["_input_hash"]: n for n, row in rows.items()}


Step = Callable[[OpenTextSandbox, dict, dict], None]
"""One reviewer's turn on an open task (the task, its process variables)."""


class QAReviewers:
    """Reviewers working the dataset's QA tasks (``qa_check``, ``lead_review``) while the DAG waits: each
    open task gets the next step."""

    def __init__(self, sandbox: OpenTextSandbox, dataset: str, steps: list[Step]):
        self.sandbox, self.dataset, self.steps = sandbox, dataset, steps
        self.stop, self.failures = threading.Event(), []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        try:
            while not self.stop.wait(0.5):
                for task in self.sandbox.tasks(
                    processDefinitionKey=QA_PROCESS, includeProcessVariables="true"
                ):
                    values = {v["name"]: v["value"] for v in task.get("variables") or []}
                    people = task["taskDefinitionKey"] in ("qa_check", "lead_review")
                    if values.get("dataset") == self.dataset and people and self.steps:
                        self.steps.pop(0)(self.sandbox, task, values)
        except BaseException as failure:  # reported by the test
            self.failures.append(failure)
            for task in self.sandbox.tasks(processDefinitionKey=QA_PROCESS):
                path = f"/process-instances/{task['processInstanceId']}"
                self.sandbox.request("DELETE", path, params={"deleteReason": f"reviewer failed: {failure}"})

    def __enter__(self) -> QAReviewers:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.failures, self.failures


def judge(user: str, numbers: dict[Any, int], *, leave_out: int = 0) -> Step:
    """Fail each sampled answer that differs from the truth, pass the rest (``leave_out``: judge fewer)."""

    def act(sandbox: OpenTextSandbox, task: dict, values: dict) -> None:
        assert task["taskDefinitionKey"] == "qa_check", task["taskDefinitionKey"]
        judged = []
        for item in values["sample"]:
            wrong = item["answer"] != truth(numbers[item["input_hash"]])
            judged.append(
                {
                    "item": item["item"],
                    "verdict": "fail" if wrong else "pass",
                    "reason": "wrong_answer" if wrong else None,
                    "comment": "This issue is about the docs." if wrong else "",
                }
            )
        judged = judged[: len(judged) - leave_out]
        sandbox.complete(task["id"], None, user, variables={"qa_judgements": json.dumps(judged)})

    return act


def lead(user: str, outcome: str | None) -> Step:
    def act(sandbox: OpenTextSandbox, task: dict, values: dict) -> None:
        assert task["taskDefinitionKey"] == "lead_review", task["taskDefinitionKey"]
        assert values["qa_figures"]["passed"] is False
        sandbox.complete(task["id"], outcome, user, comment=f"{outcome}: the errors are known and minor")

    return act


def redo_rework(prodigy_server, run_prodigy, rework: str, numbers: dict[Any, int], reference: Path):
    """The annotators redo the rework once it exists: served by Prodigy to the session each task names."""
    from prodigy_opentext.exceptions import DatasetNotFoundError
    from prodigy_opentext.hooks.prodigy import ProdigyHook

    def meta() -> dict | None:
        try:
            return ProdigyHook().get_meta(rework)
        except DatasetNotFoundError:
            return None

    found = poll_until(meta, 180, 0.5, f"the rework dataset {rework}")
    url = prodigy_server(rework, found["stream"], feed_overlap=True, args=("--route-by-meta", "annotator"))
    run_prodigy(
        "annotate", "--url", url, "--dataset", rework, "--sessions", ",".join(ANNOTATORS),
        "--disagree", 0, "--reject", 0, "--ignore", 0, "--flag", 0, "--reference", reference,
    )  # fmt: skip


def qa_processes(sandbox: OpenTextSandbox, dataset: str) -> list[dict]:
    found = sandbox.request(
        "GET",
        "/historic-process-instances",
        params={"processDefinitionKey": QA_PROCESS, "includeProcessVariables": "true", "count": 100},
    ).json()["_embedded"]["historicProcessInstances"]
    return [p for p in found if any(v["name"] == "dataset" and v["value"] == dataset for v in p["variables"])]


@pytest.fixture
def qa_sandbox(flows, opentext_sandbox_factory, monkeypatch) -> OpenTextSandbox:
    """A sandbox of the test's own (its directory changed: alice is also a QA reviewer and a lead)."""
    sandbox = opentext_sandbox_factory()
    monkeypatch.setenv("AIRFLOW_CONN_OPENTEXT_DEFAULT", connection_json(sandbox))
    sandbox.set_user_groups(ANNOTATORS["alice"], ["qa-reviewers", "annotation-leads"])
    return sandbox


@pytest.mark.slow
def test_a_failed_round_is_reworked_by_its_annotators_and_the_next_round_passes(
    flows, qa_sandbox, prodigy_server, run_prodigy, tmp_path
) -> None:
    from airflow.models.dagrun import DagRun

    from prodigy_opentext.flows.release import resolve_release_target, stage_release_data
    from prodigy_opentext.hooks.prodigy import ProdigyHook

    sandbox, dags, data = qa_sandbox, flows["dags"], flows["data"]
    dataset = f"qa_{uuid.uuid4().hex[:8]}"
    numbers = planted_dataset(dataset)
    version = batch_version(dataset)
    rows = sample_rows("textcat_docs_issues", ITEMS)
    reference = write_jsonl(
        tmp_path / "truth.jsonl", [{**row, "answer": truth(n)} for n, row in enumerate(rows, 1)]
    )
    params = {"dataset": dataset, "rework_scope": "stratum", "instructions": INSTRUCTIONS, "max_rounds": 2}
    params["request_approval"] = True

    steps = [
        judge(ANNOTATORS["alice"], numbers),  # annotated the batch: sent back
        judge(QA_REVIEWER, numbers, leave_out=1),  # an answer left out: sent back
        judge(QA_REVIEWER, numbers),
    ]
    redo = threading.Thread(
        target=redo_rework,
        args=(prodigy_server, run_prodigy, f"{dataset}_rework_{version}_r1", numbers, reference),
        daemon=True,
    )
    redo.start()
    with QAReviewers(sandbox, dataset, steps):
        first = dags["qa_rework"].test(run_conf=params)
    redo.join(60)
    assert first.state == "success", task_states(first)
    states = task_states(first)
    assert states["create_rework"] == "success" and states["passed"] == "skipped"
    assert states["start_next_round"] == "success"

    (process,) = qa_processes(sandbox, dataset)
    values = {v["name"]: v["value"] for v in process["variables"]}
    assert process["endActivityId"] == "end_rework" and values["qa_result"] == "rework"
    figures = values["qa_figures"]
    assert figures["failed"] > 0 and figures["upper_bound"] > figures["max_error_rate"] == 0.1
    assert figures["sampled"] == 29 and figures["population"] == 2 * ITEMS, (
        "the smallest sample that can pass"
    )
    bob = f"DOCUMENTATION|{dataset}-bob"
    assert set(figures["by_stratum"]) == {f"DOCUMENTATION|{dataset}-alice", bob}
    assert figures["by_stratum"][bob]["failed"] == figures["failed"], "only bob's answers failed"
    assert values["qa_reviewer"] == QA_REVIEWER

    rework = list(ProdigyHook().iter_examples(f"{dataset}_rework_{version}_r1"))
    assert len(rework) == ITEMS and {r["_session_id"] for r in rework} == {
        f"{dataset}_rework_{version}_r1-bob"
    }, "every answer of bob's failed stratum, served to bob only"
    assert all(
        r["meta"]["instructions"] == INSTRUCTIONS and r["meta"]["rework_of"] == f"{dataset}-bob"
        for r in rework
    )
    failed_meta = [r["meta"] for r in rework if r["meta"]["qa_reason"] == "wrong_answer"]
    assert len(failed_meta) == figures["failed"] and all(m["qa_comment"] for m in failed_meta)
    assert {r["answer"] for r in rework if numbers[r["_input_hash"]] <= BOB_WRONG} <= {"accept", "reject"}
    assert all(r["answer"] == truth(numbers[r["_input_hash"]]) for r in rework), "bob redid them right"

    audit = AuditLog(data / "audit" / "governance.jsonl")
    actions = [e["action"] for e in audit.entries() if e["subject"] == f"{dataset}@{version}"]
    assert actions == ["qa_round_sent_back", "qa_round_sent_back", "qa_round_recorded"]
    sent_back = " ".join(
        p for e in audit.entries() if e["action"] == "qa_round_sent_back" for p in e["details"]["problems"]
    )
    assert "alice@example.com annotated this batch" in sent_back and "has no verdict" in sent_back

    ProdigyHook().set_meta(dataset, {"qa_review": {}})  # the dataset asks for QA: approval waits for a pass
    from prodigy_opentext.exceptions import DatasetNotGovernable
    from prodigy_opentext.flows._approvals import qa_problem, require_qa

    assert "QA round 1 (process" in qa_problem(dataset, version, ProdigyHook().get_meta(dataset)), "failed"
    with pytest.raises(DatasetNotGovernable, match="ended end_rework, not passed"):
        require_qa({"dataset": dataset, "version": version})
    (second_round,) = DagRun.find(dag_id="qa_rework", run_id=f"qa__{dataset}__{version}__r2")
    assert second_round.conf["round"] == 2 and second_round.conf["rework_scope"] == "stratum"
    with QAReviewers(sandbox, dataset, [judge(QA_REVIEWER, numbers)]):
        second = dags["qa_rework"].test(run_conf=second_round.conf)
    assert second.state == "success", task_states(second)
    assert task_states(second)["start_batch_approval"] == "success"
    passed = next(p for p in qa_processes(sandbox, dataset) if p["businessKey"].endswith(":r2"))
    passed_figures = {v["name"]: v["value"] for v in passed["variables"]}["qa_figures"]
    assert passed["endActivityId"] == "end_passed" and passed_figures["failed"] == 0
    assert qa_problem(dataset, version, ProdigyHook().get_meta(dataset)) is None, "round 2 passed"
    approval = DagRun.find(dag_id="annotation_batch_approval", run_id=f"approval__{dataset}__{version}")
    assert [r.conf for r in approval] == [{"dataset": dataset, "version": version}]

    staged = stage_release_data(
        resolve_release_target(dataset, version),
        data / "staging",
        "manual__qa",
        data / "audit" / "governance.jsonl",
    )
    assert staged["consensus"]["disputes"] == 0, "bob's corrections replace his wrong answers"
    assert staged["reviewed_sha256"] != staged["export"]["sha256"], (
        "what is approved includes the corrections"
    )
    release = publish(staged, data, "manual__qa")
    manifest = json.loads(Path(release["manifest"]).read_text())
    assert len(manifest["reworked"]) == ITEMS and {e["session"] for e in manifest["reworked"]} == {
        f"{dataset}_rework_{version}_r1-bob"
    }, "the manifest lists every answer bob redid"
    assert {e["round"] for e in manifest["reworked"]} == {1}
    released = [
        json.loads(line) for line in (Path(release["path"]) / "annotations.jsonl").read_text().splitlines()
    ]
    assert sorted((numbers[r["_input_hash"]], r["answer"]) for r in released) == [
        (n, truth(n)) for n in range(1, ITEMS + 1)
    ]

    again = dags["qa_rework"].test(run_conf={**params, "round": 1})
    assert again.state == "success", task_states(again)
    assert task_states(again)["start_next_round"] == "skipped", "round 2 exists"
    assert len(qa_processes(sandbox, dataset)) == 2, "a rerun starts no second process"
    assert len(list(ProdigyHook().iter_examples(f"{dataset}_rework_{version}_r1"))) == ITEMS, (
        "and writes no duplicate"
    )


@pytest.mark.slow
def test_the_last_failed_round_goes_to_the_leads_whose_acceptance_counts(flows, qa_sandbox) -> None:
    from airflow.models.dagrun import DagRun

    sandbox, dags = qa_sandbox, flows["dags"]
    dataset = f"qa_{uuid.uuid4().hex[:8]}"
    numbers = planted_dataset(dataset)
    version = batch_version(dataset)
    steps = [
        judge(QA_REVIEWER, numbers),
        lead(ANNOTATORS["alice"], "accepted"),  # annotated the batch: sent back to the leads
        lead(LEAD, None),  # no outcome of their own: alice's is not taken for theirs
        lead(LEAD, "accepted"),
    ]
    with QAReviewers(sandbox, dataset, steps):
        run = dags["qa_rework"].test(run_conf={"dataset": dataset, "max_rounds": 1, "request_approval": True})
    assert run.state == "success", task_states(run)
    states = task_states(run)
    assert states["leads_decide"] == "success" and states["create_rework"] == "skipped"
    assert states["start_batch_approval"] == "success"
    (process,) = qa_processes(sandbox, dataset)
    assert process["endActivityId"] == "end_lead_accepted"
    audit = AuditLog(flows["data"] / "audit" / "governance.jsonl")
    entries = [e for e in audit.entries() if e["subject"] == f"{dataset}@{version}"]
    assert [e["action"] for e in entries] == [
        "qa_round_recorded",
        "qa_lead_sent_back",
        "qa_lead_sent_back",
        "qa_lead_decided",
    ]
    assert "alice@example.com annotated this batch" in entries[1]["details"]["problems"][0]
    assert "outcome '' is not one of accepted, rejected" in entries[2]["details"]["problems"][0]
    assert entries[3]["details"]["outcome"] == "accepted" and entries[3]["details"]["reviewer"] == LEAD
    assert DagRun.find(dag_id="annotation_batch_approval", run_id=f"approval__{dataset}__{version}")
