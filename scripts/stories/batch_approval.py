"""The batch approval story (flow 1): a finished batch approved by an SME in OpenText.

The batch is marked ready and ``annotation_batch_approval`` triggered; once Airflow waits deferred for the
OpenText task, the SME approves it with a comment, and the run records the sign-off.
"""

from __future__ import annotations

import time
from typing import ClassVar

from scripts.stories._story import Journal, World, approve, finish, open_task

SME_REVIEWER = "sme.reviewer@example.com"
BATCH_PROCESS = "annotation_batch_approval"
BATCH_DAG = "annotation_batch_approval"


class BatchApprovalStory:
    dag_ids: ClassVar[tuple[str, ...]] = (BATCH_DAG,)
    results: ClassVar[tuple[str, ...]] = ()

    def play(self, world: World, journal: Journal) -> None:
        world.prodigy.update_dataset(world.dataset, {"review": {"status": "ready"}})
        batch = world.api.trigger(BATCH_DAG, {"dataset": world.dataset})
        world.step(f"{world.dataset} marked ready for review; triggered {BATCH_DAG}", world.run_url(batch))
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
