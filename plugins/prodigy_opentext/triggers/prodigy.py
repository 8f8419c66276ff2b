"""Trigger that waits in the triggerer for a Prodigy annotation batch to be done."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from prodigy_opentext.core.records import AnnotationProgress, BatchTarget
from prodigy_opentext.exceptions import DatasetNotFoundError, ProdigyDatabaseError
from prodigy_opentext.hooks.prodigy import ProdigyHook


class ProdigyBatchTrigger(BaseTrigger):
    """Poll Prodigy's database until a dataset meets its batch target, then yield one event.

    The database is read through :class:`ProdigyHook` in a worker thread, so the triggerer's event loop never
    blocks, with a connection opened per poll: hundreds of waits hold no idle database connections. The
    event payload is ``{"status": "reached", "counts": {...}, "target": {...}}`` (counts as
    ``ProdigyHook.batch_counts`` returns them), or ``{"status": "error", "message": ...}`` when the database
    stays unreachable, or the dataset missing, for longer than ``error_budget`` seconds; shorter outages
    (a restart, a locked SQLite file) are waited out.

    :param target: a :class:`~prodigy_opentext.core.records.BatchTarget` as a dict (``as_dict()``).
    """

    def __init__(
        self,
        dataset: str,
        target: dict[str, Any],
        prodigy_conn_id: str = ProdigyHook.default_conn_name,
        poll_interval: float = 60.0,
        error_budget: float = 900.0,
    ) -> None:
        super().__init__()
        self.dataset = dataset
        self.target = target
        self.prodigy_conn_id = prodigy_conn_id
        self.poll_interval = poll_interval
        self.error_budget = error_budget

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "dataset": self.dataset,
                "target": self.target,
                "prodigy_conn_id": self.prodigy_conn_id,
                "poll_interval": self.poll_interval,
                "error_budget": self.error_budget,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from sqlalchemy.exc import DBAPIError

        target = BatchTarget(**self.target)
        hook = ProdigyHook(self.prodigy_conn_id, pooled=False)  # no idle connection held between polls
        progress = AnnotationProgress()  # each poll reads only the answers added since the last one
        failing_since: float | None = None
        while True:
            try:
                counts = await asyncio.to_thread(
                    hook.batch_counts, self.dataset, target.annotators_per_input, progress
                )
            except (ProdigyDatabaseError, DatasetNotFoundError, DBAPIError) as err:
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > self.error_budget:
                    yield TriggerEvent({"status": "error", "dataset": self.dataset, "message": str(err)})
                    return
                self.log.warning("Cannot read dataset %r yet, still waiting: %s", self.dataset, err)
            else:
                failing_since = None
                if target.reached(counts):
                    yield TriggerEvent({"status": "reached", "counts": counts, "target": target.as_dict()})
                    return
                self.log.info("Dataset %r not done yet: %s", self.dataset, counts)
            await asyncio.sleep(self.poll_interval)
