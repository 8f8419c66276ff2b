"""The batch approval story (flow 1): a finished batch approved by an SME in OpenText.

The batch is marked ready; ``annotation_ready_batches`` (scheduled every 30 minutes, triggered here so the
story need not wait) starts its ``annotation_batch_approval`` run; once that run waits deferred for the
OpenText task, the SME approves it with a comment, and the run records the sign-off.
"""

from __future__ import annotations

import time
from typing import ClassVar

from scripts.stories._story import Journal, World, approve, finish, open_task

SME_REVIEWER = "sme.reviewer@example.com"
BATCH_PROCESS = "annotation_batch_approval"
BATCH_DAG = "annotation_batch_approval"
READY_BATCHES_DAG = "annotation_ready_batches"


class BatchApprovalStory:
    dag_ids: ClassVar[tuple[str, ...]] = (READY_BATCHES_DAG, BATCH_DAG)
    results: ClassVar[tuple[str, ...]] = ()

    def play(self, world: World, journal: Journal) -> None:
        world.prodigy.update_dataset(world.dataset, {"review": {"status": "ready"}})
        ready = world.api.trigger(READY_BATCHES_DAG)
        world.step(
            f"{world.dataset} marked ready for review; triggered {READY_BATCHES_DAG}", world.run_url(ready)
        )
        finish(world, ready, journal)
        batch = world.api.wait_for_new_run(BATCH_DAG, world.for_dataset, world.timeout, world.stack)
        world.step(f"It started {BATCH_DAG} run {batch['dag_run_id']}", world.run_url(batch))
        task, waits = open_task(world, batch, BATCH_PROCESS, journal)
        world.step(
            f"OpenText task '{task['name']}' waits for a reviewer; in Airflow: {', '.join(waits)}",
            world.reviewer.task_url(task),
        )
        if world.review_pause > 0:
            world.step(
                f"The reviewer acts in {world.review_pause:.0f}s: look at the run and the inbox now", None
            )
            time.sleep(world.review_pause)
        comment = "Spot-checked the batch: labels and agreement are acceptable."
        approve(world, task, waits, SME_REVIEWER, comment, journal)
        finish(world, batch, journal)
