"""Label escalation (flow 2) end to end: ``dag.test()`` against both sandboxes, reviewers in OpenText.

A batch with planted disagreements, an ignore, a flag and a low score; its cases are decided through the
sandbox (one sent back for an item outside the case, one for a reviewer who annotated its items, one
escalated by its timer to the leads), and every decision comes back into Prodigy as an adjudicated
example the consensus then takes as final.
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
from prodigy_opentext.core.escalation import ESCALATION_PROCESS
from prodigy_opentext.flows.release import resolve_release_target, stage_release_data
from tests.fixtures.airflow_db import task_states
from tests.fixtures.opentext_sandbox import OpenTextSandbox
from tests.flows.support import ANNOTATORS, batch_version, publish
from tests.hooks.prodigy_support import sample_rows
from tests.hooks.test_opentext_contract import connection_json

SENIOR, LEAD = "senior@example.com", "lead@example.com"
# input number -> (alice's answer, bob's answer, what else alice's answer carries)
PLANTED: dict[int, tuple[str, str, dict[str, Any]]] = {
    1: ("accept", "accept", {}),
    2: ("accept", "reject", {}),  # disagree
    3: ("accept", "ignore", {}),  # ignored
    4: ("accept", "accept", {"flagged": True}),  # flagged
    5: ("accept", "accept", {"meta": {"score": 0.1}}),  # below min_score
    6: ("reject", "reject", {}),
    7: ("reject", "accept", {}),  # disagree
}
DISPUTED = (2, 3, 4, 5, 7)


def planted_dataset(name: str) -> dict[int, dict[str, Any]]:
    """The planted answers stored in Prodigy; returns each input's task (without answer) by number."""
    from prodigy_opentext.hooks.prodigy import ProdigyHook

    rows = {
        n: {k: v for k, v in row.items() if k != "answer"}
        for n, row in enumerate(sample_rows("textcat_docs_issues", 7), 1)
    }
    answers = []
    for number, (alice, bob, extra) in PLANTED.items():
        for who, answer, more in (("alice", alice, extra), ("bob", bob, {})):
            session = f"{name}-{who}"
            answers.append(
                {
                    **rows[number],
                    **more,
                    "answer": answer,
                    "_annotator_id": session,
                    "_session_id": session,
                    "_timestamp": 1_700_000_000 + number,
                }
            )
    hook = ProdigyHook()
    hook.add_examples(name, answers)
    hook.set_meta(name, {"labels": ["DOCUMENTATION"], "annotator_emails": ANNOTATORS})
    return rows


Step = Callable[[OpenTextSandbox, dict, list[dict]], bool]
"""One reviewer's turn on a case's open task; False: not yet (asked again at the next look)."""


class CaseReviewers:
    """Reviewers working the dataset's cases in the sandbox while the DAG waits: each case (named by the
    planted number of its first item) gets its steps in turn, one per open review task."""

    def __init__(
        self, sandbox: OpenTextSandbox, dataset: str, numbers: dict[str, int], steps: dict[int, list[Step]]
    ):
        self.sandbox, self.dataset, self.numbers, self.steps = sandbox, dataset, numbers, steps
        self.stop, self.failures = threading.Event(), []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def open_reviews(self) -> list[tuple[dict, list[dict]]]:
        found = []
        for task in self.sandbox.tasks(
            processDefinitionKey=ESCALATION_PROCESS, includeProcessVariables="true"
        ):
            values = {v["name"]: v["value"] for v in task.get("variables") or []}
            if values.get("dataset") == self.dataset and task["taskDefinitionKey"] != "check_decisions":
                found.append((task, values["examples"]))
        return found

    def run(self) -> None:
        try:
            while not self.stop.wait(0.5):
                for task, items in self.open_reviews():
                    steps = self.steps[self.numbers[items[0]["item"]]]
                    if steps and steps[0](self.sandbox, task, items):
                        steps.pop(0)
        except BaseException as failure:  # reported by the test, once the waits it ends have ended
            self.failures.append(failure)
            for task, _ in self.open_reviews():
                path = f"/process-instances/{task['processInstanceId']}"
                self.sandbox.request("DELETE", path, params={"deleteReason": f"reviewer failed: {failure}"})


def submit(user: str, decide: Callable[[list[dict]], list[dict]]) -> Step:
    def act(sandbox: OpenTextSandbox, task: dict, items: list[dict]) -> bool:
        sandbox.complete(task["id"], "decided", user, variables={"adjudications": json.dumps(decide(items))})
        return True

    return act


def escalate_when_alone(reviewers: CaseReviewers) -> Step:
    """Nobody decides in time: once the other cases are settled, the process clock passes the due time."""

    def act(sandbox: OpenTextSandbox, task: dict, items: list[dict]) -> bool:
        if len(reviewers.open_reviews()) > 1:
            return False
        sandbox.advance_clock(3600 + 5)
        return True

    return act


@pytest.mark.slow
def test_unsettled_items_are_adjudicated_by_reviewers_and_counted_as_settled(
    flows, opentext_sandbox_factory, monkeypatch, prodigy_home
) -> None:
    from prodigy_opentext.core.consensus import build_consensus
    from prodigy_opentext.flows._shared import adjudications_of
    from prodigy_opentext.hooks.prodigy import ProdigyHook

    sandbox = opentext_sandbox_factory()  # its own clock: the escalation moves it an hour on
    monkeypatch.setenv("AIRFLOW_CONN_OPENTEXT_DEFAULT", connection_json(sandbox))
    sandbox.set_user_groups(ANNOTATORS["alice"], ["senior-annotators"])
    dags, data = flows["dags"], flows["data"]
    dataset = f"disputed_{uuid.uuid4().hex[:8]}"
    rows = planted_dataset(dataset)
    numbers = {f"{row['_input_hash']}:{row['label']}": number for number, row in rows.items()}

    def version_of(items: list[dict], item: dict, answer: str) -> str:
        return next(v["version"] for v in item["versions"] if v["answer"] == answer)

    def outside_the_case(items: list[dict]) -> list[dict]:
        return [{"item": "no-such-item", "decision": "rejected"}]

    def first_case(items: list[dict]) -> list[dict]:
        two, three = items
        return [
            {"item": two["item"], "decision": "chosen", "version": version_of(items, two, "reject")},
            {
                "item": three["item"],
                "decision": "corrected",
                "correction": {"answer": "accept"},
                "comment": "clearly docs",
            },
        ]

    def second_case(items: list[dict]) -> list[dict]:
        four, five = items
        return [
            {"item": four["item"], "decision": "rejected"},
            {"item": five["item"], "decision": "chosen", "version": "v1"},
        ]

    def third_case(items: list[dict]) -> list[dict]:
        (seven,) = items
        return [{"item": seven["item"], "decision": "chosen", "version": version_of(items, seven, "accept")}]

    reviewers = CaseReviewers(sandbox, dataset, numbers, {})
    reviewers.steps.update(
        {
            2: [submit(SENIOR, outside_the_case), submit(SENIOR, first_case)],
            4: [submit(ANNOTATORS["alice"], second_case), submit(SENIOR, second_case)],
            7: [escalate_when_alone(reviewers), submit(LEAD, third_case)],
        }
    )
    params = {"dataset": dataset, "min_score": 0.5, "items_per_case": 2, "escalation_after": "PT1H"}
    reviewers.thread.start()
    try:
        run = dags["label_escalation"].test(run_conf=params)
    finally:
        reviewers.stop.set()
        reviewers.thread.join(30)
    assert not reviewers.failures, reviewers.failures
    assert run.state == "success", task_states(run)
    assert task_states(run)["start_next"] == "skipped", "approval is requested only when asked"

    cases = sandbox.request(
        "GET", "/historic-process-instances", params={"processDefinitionKey": ESCALATION_PROCESS, "count": 50}
    ).json()["_embedded"]["historicProcessInstances"]
    assert len(cases) == 3 and all(c["endActivityId"] == "end_resolved" for c in cases)
    held = sorted(numbers[item["item"]] for c in sandbox_cases_items(sandbox, cases) for item in c)
    assert held == list(DISPUTED), "the cases hold exactly the planted disputes"

    adjudicated = {
        numbers[f"{e['_input_hash']}:{e['label']}"]: e
        for e in ProdigyHook().iter_examples(f"{dataset}_adjudicated")
    }
    assert all(e["text"] == rows[n]["text"] for n, e in adjudicated.items()), "the annotated text, unchanged"
    assert sorted(adjudicated) == list(DISPUTED)
    decided = {
        n: (e["answer"], e["meta"]["adjudication"]["decision"], e["meta"]["adjudication"]["reviewer"])
        for n, e in adjudicated.items()
    }
    assert decided == {
        2: ("reject", "chosen", SENIOR),
        3: ("accept", "corrected", SENIOR),
        4: ("reject", "rejected", SENIOR),
        5: ("accept", "chosen", SENIOR),
        7: ("accept", "chosen", LEAD),
    }
    assert adjudicated[2]["meta"]["adjudication"]["versions_from"] == [f"{dataset}-bob"]
    assert sorted(adjudicated[5]["meta"]["adjudication"]["versions_from"]) == [
        f"{dataset}-alice",
        f"{dataset}-bob",
    ]
    assert all(
        e["_adjudicated"] is True and e["meta"]["adjudication"]["process_instance_id"]
        for e in adjudicated.values()
    )
    assert "flagged" not in adjudicated[4]

    audit = AuditLog(data / "audit" / "governance.jsonl")
    actions = sorted(e["action"] for e in audit.entries() if e["subject"].startswith(dataset))
    assert actions == ["case_adjudicated"] * 3 + ["case_sent_back"] * 2
    sent_back = [
        e["details"]["problems"]
        for e in audit.entries()
        if e["action"] == "case_sent_back" and e["subject"].startswith(dataset)
    ]
    assert any("'no-such-item' is not in this case" in " ".join(p) for p in sent_back)
    assert any("alice@example.com annotated item(s)" in " ".join(p) for p in sent_back)

    answers = list(ProdigyHook().iter_examples(dataset))
    consensus = build_consensus(answers, adjudications=adjudications_of(dataset), min_score=0.5)
    assert consensus.disputes == [] and consensus.resolved == len(DISPUTED)

    target = resolve_release_target(dataset, batch_version(dataset))
    staged = stage_release_data(
        target, data / "staging", "manual__escalated", data / "audit" / "governance.jsonl"
    )
    assert staged["consensus"]["disputes"] == 0, "adjudicated items count as settled"
    assert sorted(numbers[entry["item"]] for entry in staged["adjudications"]) == list(DISPUTED)
    release = publish(staged, data, "manual__escalated")
    manifest = json.loads(Path(release["manifest"]).read_text())
    assert [(entry["item"], entry["decision"]) for entry in manifest["adjudications"]] == [
        (entry["item"], entry["decision"]) for entry in staged["adjudications"]
    ]
    released = {
        numbers[f"{row['_input_hash']}:{row['label']}"]: row["answer"]
        for row in map(json.loads, (Path(release["path"]) / "annotations.jsonl").read_text().splitlines())
    }
    assert {n: released[n] for n in DISPUTED} == {n: decided[n][0] for n in DISPUTED}, (
        "the adjudicated versions"
    )

    from airflow.models.dagrun import DagRun

    again = dags["label_escalation"].test(run_conf={**params, "request_approval": True})
    assert again.state == "success", task_states(again)
    approval = f"approval__{dataset}__{batch_version(dataset)}"
    assert [r.conf for r in DagRun.find(dag_id="annotation_batch_approval", run_id=approval)] == [
        {"dataset": dataset, "version": batch_version(dataset)}
    ], "a settled batch goes to approval"
    assert len(list(ProdigyHook().iter_examples(f"{dataset}_adjudicated"))) == len(DISPUTED), "no duplicate"
    total = sandbox.request(
        "GET", "/historic-process-instances", params={"processDefinitionKey": ESCALATION_PROCESS}
    ).json()["page"]["totalElements"]
    assert total == 3, "a rerun of a settled batch opens no case"


def sandbox_cases_items(sandbox: OpenTextSandbox, cases: list[dict]) -> list[list[dict]]:
    items = []
    for case in cases:
        body = sandbox.request(
            "GET",
            "/historic-process-instances",
            params={"processInstanceId": case["id"], "includeProcessVariables": "true"},
        ).json()
        values = {
            v["name"]: v["value"] for v in body["_embedded"]["historicProcessInstances"][0]["variables"]
        }
        items.append(values["examples"])
    return items
