"""The escalation story (flow 2): the items the annotators did not settle, decided by a senior annotator.

The batch is marked ready; ``annotation_ready_batches`` (scheduled every 30 minutes, triggered here so the
story need not wait) starts its ``label_escalation`` run; for each case that opens in OpenText (a
``label_dispute_resolution`` process), the senior annotator takes, for every item, the version most
annotators gave; Airflow checks the decisions and writes them into Prodigy as adjudicated examples, then
starts the settled batch's first QA round (the demo dataset's meta asks for QA). Journal result:
``adjudicated`` (cases and items decided).
"""

from __future__ import annotations

from typing import Any, ClassVar

from scripts.stories._story import Journal, World, finish

READY_BATCHES_DAG = "annotation_ready_batches"

SENIOR_ANNOTATOR = "senior.annotator@example.com"
ESCALATION_DAG = "label_escalation"
ESCALATION_PROCESS = "label_dispute_resolution"
REVIEW_TASKS = ("senior_review", "lead_review")


class EscalationStory:
    dag_ids: ClassVar[tuple[str, ...]] = (READY_BATCHES_DAG, ESCALATION_DAG)
    results: ClassVar[tuple[str, ...]] = ("adjudicated",)

    def play(self, world: World, journal: Journal) -> None:
        world.prodigy.update_dataset(world.dataset, {"review": {"status": "ready"}})
        ready = world.api.trigger(READY_BATCHES_DAG)
        world.step(
            f"{world.dataset} marked ready for review; triggered {READY_BATCHES_DAG}", world.run_url(ready)
        )
        finish(world, ready, journal)
        run = world.api.wait_for_new_run(ESCALATION_DAG, world.for_dataset, world.timeout, world.stack)
        world.step(
            f"It started {ESCALATION_DAG} run {run['dag_run_id']} for the unsettled items", world.run_url(run)
        )
        decided: dict[str, int] = {}

        def decide_open_cases(_run: dict[str, Any], _tasks: list[dict[str, Any]]) -> bool:
            for task in world.reviewer.open_tasks(processDefinitionKey=ESCALATION_PROCESS):
                values = {v["name"]: v.get("value") for v in task.get("variables") or []}
                if task["taskDefinitionKey"] not in REVIEW_TASKS or values.get("dataset") != world.dataset:
                    continue
                items = values["examples"]
                choices = [
                    {"item": item["item"], "decision": "chosen", "version": item["versions"][0]["version"]}
                    for item in items
                ]
                comment = "Took the version most annotators gave for each item."
                world.reviewer.decide(task, SENIOR_ANNOTATOR, "decided", comment, {"adjudications": choices})
                decided[task["processInstanceId"]] = len(items)
                world.step(f"{SENIOR_ANNOTATOR} decided case '{task['name']}' ({len(items)} items)", None)
            return False  # on until the run ends

        world.api.wait_for_run(
            ESCALATION_DAG, run["dag_run_id"], world.timeout, until=decide_open_cases, stack=world.stack
        )
        finish(world, run, journal)
        journal.results["adjudicated"] = {"cases": len(decided), "items": sum(decided.values())}
        world.step(
            f"{sum(decided.values())} unsettled items in {len(decided)} case(s) adjudicated into Prodigy",
            None,
        )
