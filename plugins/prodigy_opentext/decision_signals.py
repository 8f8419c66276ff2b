"""Decisions pushed from OpenText: the signal a model's HttpTask leaves in Airflow, and the waits it wakes.

The models in ``include/bpmn`` end each decision with an HttpTask that calls Airflow's
``/opentext-callbacks/decisions`` (:mod:`prodigy_opentext.decision_callbacks`), which sets the Variable
``opentext_decided__<process instance>__<activity>``. The waits of one triggerer share one watcher: it
lists those Variables twice a second (one call for all waits, through the Task SDK) and wakes the waits
whose process has a new one. A woken wait reads the decision from OpenText at once: the signal only says
when to look, so a forged call costs one read and never decides anything. Without a signal (no callback
configured, Airflow unreachable from OpenText, or no Task SDK channel) the waits poll as before.
"""

from __future__ import annotations

import asyncio
import logging
import weakref

SIGNAL_PREFIX = "opentext_decided__"
CHECK_INTERVAL_SECONDS = 0.5
"""How often one watcher lists the signals (one call for all its waits): a pushed decision resumes its
wait within about this plus one read of OpenText."""

KEYS_PAGE = 1000
RETRY_SECONDS = 30.0
"""How long the watcher waits after the signals could not be listed."""

log = logging.getLogger(__name__)


def signal_key(process_instance_id: str, activity_id: str) -> str:
    """The Variable a callback sets when ``activity_id`` of the process was decided."""
    return f"{SIGNAL_PREFIX}{process_instance_id}__{activity_id}"


def _signalled_process(key: str) -> str:
    return key.removeprefix(SIGNAL_PREFIX).rpartition("__")[0]


def forget_signals(process_instance_id: str) -> int:
    """Delete the process's signals once its decision is taken (from the task that took it)."""
    from airflow.sdk import Variable

    keys = list(Variable.keys(prefix=f"{SIGNAL_PREFIX}{process_instance_id}__"))
    for key in keys:
        Variable.delete(key)
    return len(keys)


class DecisionWatcher:
    """Wakes the waits of one event loop whose process was signalled; lists the signals while any wait."""

    def __init__(self, interval: float = CHECK_INTERVAL_SECONDS) -> None:
        self.interval = interval
        self._waits: dict[str, set[asyncio.Event]] = {}
        self._seen: set[str] | None = None
        self._task: asyncio.Task | None = None
        self.unavailable: str | None = None
        """Why signals cannot be read here (then the waits only poll)."""

    def watch(self, process_instance_id: str) -> asyncio.Event:
        """An event set whenever a new signal for the process appears."""
        woken = asyncio.Event()
        self._waits.setdefault(process_instance_id, set()).add(woken)
        if self.unavailable is None and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._run(), name="opentext-decision-watcher")
        return woken

    def unwatch(self, process_instance_id: str, woken: asyncio.Event) -> None:
        waits = self._waits.get(process_instance_id, set())
        waits.discard(woken)
        if not waits:
            self._waits.pop(process_instance_id, None)

    async def _run(self) -> None:
        while self._waits:
            try:
                keys = set(await signal_keys())
            except ImportError as error:  # no Task SDK channel (not in a triggerer): the waits only poll
                self.unavailable = f"{type(error).__name__}: {error}"
                log.info("decision callbacks cannot be read here, the waits poll: %s", self.unavailable)
                return
            except Exception as error:  # the API refused or is down: polling carries the waits meanwhile
                log.warning("listing decision callbacks failed, again in %.0fs: %s", RETRY_SECONDS, error)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            # The first listing wakes every wait with a signal: one extra read each, nothing missed.
            new = keys - self._seen if self._seen is not None else keys
            self._seen = keys
            for process_instance_id in {_signalled_process(key) for key in new}:
                for woken in self._waits.get(process_instance_id, ()):
                    woken.set()
            await asyncio.sleep(self.interval)
        self._seen = None  # no wait left: the next one starts from what is there then


async def signal_keys() -> list[str]:
    """Every signal's key, through the Task SDK's channel (one call a page, however many waits).

    Asked on the event loop itself, as the SDK's own async accessors ask (``asend`` where the channel has it,
    as a triggerer's does): a thread left asking after the loop's last wait ended could take the answer
    meant for a task that the same process runs next (``dag.test()`` does).
    """
    from airflow.sdk.execution_time.comms import ErrorResponse, GetVariableKeys, VariableKeysResult
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS  # ImportError: no channel here

    keys: list[str] = []
    while True:
        message = GetVariableKeys(prefix=SIGNAL_PREFIX, limit=KEYS_PAGE, offset=len(keys))
        asend = getattr(SUPERVISOR_COMMS, "asend", None)
        reply = await asend(message) if asend else SUPERVISOR_COMMS.send(message)
        if isinstance(reply, ErrorResponse) or not isinstance(reply, VariableKeysResult):
            raise RuntimeError(f"listing the decision signals failed: {reply}")
        keys += reply.keys
        if not reply.keys or len(keys) >= reply.total_entries:
            return keys


_WATCHERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, DecisionWatcher] = weakref.WeakKeyDictionary()


def decision_watcher() -> DecisionWatcher:
    """The running event loop's watcher (a triggerer runs all its triggers in one loop)."""
    return _WATCHERS.setdefault(asyncio.get_running_loop(), DecisionWatcher())
