"""The batch approval story (flow 1): a settled batch approved by an SME in OpenText.

The QA round that passed the settled batch (the QA story) starts its ``annotation_batch_approval``
run; once that run waits deferred for the OpenText task, the SME approves it with a comment, and the run
records the sign-off.
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
        batch = world.api.wait_for_new_run(BATCH_DAG, world.for_dataset, world.timeout, world.stack)
        world.step(f"The settled batch's {BATCH_DAG} run {batch['dag_run_id']} started", world.run_url(batch))
        task, waits = open_task(world, batch, BATCH_PROCESS, journal)
        world.step(
            f"OpenText task '{task['name']}' waits for a reviewer, the batch's review report attached; "
            f"in Airflow: {', '.join(waits)}",
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
