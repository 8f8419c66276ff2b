"""Trigger that waits in the triggerer for a decision in OpenText Workflow Service."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from prodigy_opentext.decision_signals import decision_watcher
from prodigy_opentext.exceptions import OpenTextError, OpenTextUnavailableError
from prodigy_opentext.hooks.opentext_async import OpenTextWorkflowAsyncHook

REREADS_AFTER_CALLBACK = 4
REREAD_SECONDS = 0.5
"""After a callback the decision is read now and up to four more times half a second apart."""


class OpenTextProcessTrigger(BaseTrigger):
    """Poll a process instance until reviewers decide, then yield one event.

    Decided means: the task definition ``task_definition_key`` completed, else the process variable
    ``decision_variable`` set, else the process waiting at Airflow's own task ``open_task_key``, else
    the instance ended (an instance that ends first is decided too). The
    event payload is ``{"status": "decided", "decision": {...}}`` (outcome, end activity, approver, time,
    comments), ``{"status": "timeout"}`` once ``deadline`` passes, or ``{"status": "error", "error": {...}}``
    (the fields of the :class:`OpenTextError`) when OpenText refuses the request or stays unreachable longer
    than ``error_budget`` seconds. Shorter outages (a restart, 5xx, 429) are waited out and the wait resumes.

    The triggers of one triggerer (one event loop) on the same connection share one HTTP session and one
    token through their hooks (:class:`~prodigy_opentext.hooks.opentext_async.SharedClient`): a thousand
    waits hold one connection pool and fetch one token per lifetime, and a refused token is fetched anew
    once for all of them.

    Where the model calls back when a decision is in (:mod:`prodigy_opentext.decision_signals`), the wait
    reads OpenText at once instead of at its next poll, and again a few times shortly after (a model may
    call back just before its process ends); ``poll_interval`` is then only the fallback's pace.

    :param deadline: ISO-8601 time after which the wait ends with ``timeout`` (none: wait indefinitely).
    :param wake_on_callback: also wake on the model's callback (default); False: poll only.
    """

    def __init__(
        self,
        process_instance_id: str,
        task_definition_key: str | None = None,
        decision_variable: str | None = None,
        open_task_key: str | None = None,
        opentext_conn_id: str = OpenTextWorkflowAsyncHook.default_conn_name,
        poll_interval: float = 30.0,
        deadline: str | None = None,
        error_budget: float = 900.0,
        wake_on_callback: bool = True,
    ) -> None:
        super().__init__()
        self.process_instance_id = process_instance_id
        self.task_definition_key = task_definition_key
        self.decision_variable = decision_variable
        self.open_task_key = open_task_key
        self.opentext_conn_id = opentext_conn_id
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.error_budget = error_budget
        self.wake_on_callback = wake_on_callback

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "process_instance_id": self.process_instance_id,
                "task_definition_key": self.task_definition_key,
                "decision_variable": self.decision_variable,
                "open_task_key": self.open_task_key,
                "opentext_conn_id": self.opentext_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "error_budget": self.error_budget,
                "wake_on_callback": self.wake_on_callback,
            },
        )

    def _past_deadline(self) -> bool:
        return self._until_deadline() <= 0

    def _until_deadline(self) -> float:
        """Seconds left until the deadline (never a wait beyond it), infinite without one."""
        if self.deadline is None:
            return float("inf")
        return (datetime.fromisoformat(self.deadline) - datetime.now(UTC)).total_seconds()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # The event is yielded after the hook has let go of the loop's shared session, so closing the
        # generator right after its one event (as the triggerer does) has nothing left to clean up.
        yield await self._wait()

    async def _wait(self) -> TriggerEvent:
        watcher = decision_watcher() if self.wake_on_callback else None
        woken = watcher.watch(self.process_instance_id) if watcher else asyncio.Event()
        try:
            return await self._poll(woken)
        finally:
            if watcher:
                watcher.unwatch(self.process_instance_id, woken)

    async def _poll(self, woken: asyncio.Event) -> TriggerEvent:
        unreachable_since: float | None = None
        rereads = 0
        async with OpenTextWorkflowAsyncHook(self.opentext_conn_id) as hook:
            while True:
                try:
                    decision = await hook.read_decision(
                        self.process_instance_id,
                        self.task_definition_key,
                        self.decision_variable,
                        self.open_task_key,
                    )
                    unreachable_since = None
                except OpenTextUnavailableError as err:
                    unreachable_since = unreachable_since or time.monotonic()
                    if time.monotonic() - unreachable_since > self.error_budget:
                        return TriggerEvent({"status": "error", "error": err.to_dict()})
                    self.log.warning("OpenText unavailable, still waiting: %s", err)
                    decision = None
                except OpenTextError as err:
                    return TriggerEvent({"status": "error", "error": err.to_dict()})
                if decision is not None:
                    return TriggerEvent({"status": "decided", "decision": decision})
                if self._past_deadline():
                    return TriggerEvent({"status": "timeout", "deadline": self.deadline})
                pause = min(REREAD_SECONDS if rereads else self.poll_interval, self._until_deadline())
                rereads = max(rereads - 1, 0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), pause)
                if woken.is_set():
                    woken.clear()
                    rereads = REREADS_AFTER_CALLBACK
                    self.log.info(
                        "OpenText called back on %s: reading its decision now", self.process_instance_id
                    )
