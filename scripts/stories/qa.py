"""The QA story (flow 6): a QA reviewer checks a sample of the settled batch; a failed round goes back to
the annotators who gave the failed answers, and the next round passes.

The escalation run starts the batch's first ``qa_rework`` round (the demo dataset's meta asks for QA). For
each round the QA reviewer judges every sampled answer in OpenText against the demo's reference labels
(``include/demo/tasks.jsonl``): pass, or fail with a reason and a comment. When a round fails, Airflow
writes the rework dataset and its task stream; the story serves it (each task to the session that gave the
answer) and the annotators redo their tasks from the guidelines (the reference); Airflow then starts the
next round. Journal result: ``qa_rounds`` (each round's sampled and failed answers, and the rework).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from scripts.launchers import DEMO_TASKS, Annotators
from scripts.stories._story import Journal, World, annotate_stream, finish

QA_DAG = "qa_rework"
QA_PROCESS = "qa_review"
QA_REVIEWER = "qa.reviewer@example.com"
MAX_ROUNDS = 3


def reference_labels() -> dict[Any, frozenset]:
    """The reference spans of each demo input, by input hash (as Prodigy hashes it)."""
    from sandbox.prodigy.tasks import set_hashes

    tasks = (set_hashes(json.loads(line)) for line in DEMO_TASKS.read_text().splitlines() if line.strip())
    return {task["_input_hash"]: _spans(task) for task in tasks}


def _spans(task: dict[str, Any]) -> frozenset:
    return frozenset((s["start"], s["end"], s["label"]) for s in task.get("spans") or [])


def judgements(sample: list[dict[str, Any]], reference: dict[Any, frozenset]) -> list[dict[str, Any]]:
    """Each sampled answer judged against the reference: an answer that marks other spans fails."""
    judged = []
    for item in sample:
        wrong = item["answer"] != "accept" or _spans(item) != reference.get(item["input_hash"])
        judged.append(
            {
                "item": item["item"],
                "verdict": "fail" if wrong else "pass",
                "reason": "wrong_label" if wrong else None,
                "comment": "The brands marked here differ from the guidelines." if wrong else "",
            }
        )
    return judged


class QAStory:
    dag_ids: ClassVar[tuple[str, ...]] = (QA_DAG,)
    results: ClassVar[tuple[str, ...]] = ("qa_rounds",)

    def play(self, world: World, journal: Journal) -> None:
        reference = reference_labels()
        rounds: list[dict[str, Any]] = []
        journal.results["qa_rounds"] = rounds
        for qa_round in range(1, MAX_ROUNDS + 1):
            run = world.api.wait_for_new_run(
                QA_DAG,
                lambda r, n=qa_round: world.for_dataset(r) and (r.get("conf") or {}).get("round") == n,
                world.timeout,
                world.stack,
            )
            world.step(
                f"QA round {qa_round} of {world.dataset}: {QA_DAG} run {run['dag_run_id']}",
                world.run_url(run),
            )
            task = world.reviewer.wait_for_task(
                QA_PROCESS, {"dataset": world.dataset, "rework_round": qa_round}, world.timeout, world.stack
            )
            values = {v["name"]: v.get("value") for v in task.get("variables") or []}
            judged = judgements(values["sample"], reference)
            failed = sum(j["verdict"] == "fail" for j in judged)
            comment = f"Checked {len(judged)} sampled answers against the guidelines: {failed} wrong."
            world.reviewer.decide(task, QA_REVIEWER, "judged", comment, {"qa_judgements": judged})
            record = {"round": qa_round, "sampled": len(judged), "failed": failed, "rework": None}
            rounds.append(record)
            if failed:
                version = (run.get("conf") or {}).get("version")
                record["rework"] = self.redo_rework(world, f"{world.dataset}_rework_{version}_r{qa_round}")
            finish(world, run, journal)
            if not failed:
                world.step(f"QA round {qa_round} passed: {len(judged)} sampled answers, none wrong", None)
                return

    def redo_rework(self, world: World, rework: str) -> dict[str, Any]:
        """Once Airflow wrote the rework dataset, serve it and let its annotators redo their tasks."""
        from scripts.processes import wait_for

        meta = wait_for(
            lambda: world.prodigy.dataset_meta(rework),
            timeout=world.timeout,
            what=f"the rework dataset {rework}",
            interval=1,
            stack=world.stack,
        )
        redone = Annotators(tuple(meta["sessions"]), disagree=0.0, reference=DEMO_TASKS)
        url, summary = annotate_stream(world, rework, meta, redone, ("--route-by-meta", "annotator"))
        world.step(
            f"{meta['tasks']} answers went back to {', '.join(meta['sessions'])} in Prodigy dataset {rework} "
            f"(instructions and the reviewer's comment in each task's meta); they redid them: {summary}",
            url,
        )
        return {"dataset": rework, "tasks": meta["tasks"], "sessions": meta["sessions"]}
