"""What every demo story shares: the world it acts on, the journal it keeps, and how it follows a run.

A story drives one flow end to end through the real scheduler, reviewers simulated: it triggers or finds
a DAG run, decides the OpenText task the run waits for once Airflow waits deferred, and waits for the run
to succeed. A run that does not raises :class:`FlowFailed` with its failed tasks' logs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from scripts.airflow_api import AirflowApi, task_label
from scripts.launchers import Annotators, ProdigyProject
from scripts.processes import Stack, StackError, free_port, say, wait_for
from scripts.reviewer import Reviewer

WAITING_STATES = frozenset({"deferred", "running", "up_for_reschedule"})
"""A task in one of these states may be a wait: deferred (no worker slot), poking, or between pokes."""
DEFERRAL_GRACE_SECONDS = 60.0

Step = Callable[[str, str | None], None]


class FlowFailed(Exception):
    """A run ended in another state than success; the message holds its failed tasks' logs."""


def print_step(title: str, link: str | None) -> None:
    say(f"  {title}" + (f"\n    {link}" if link else ""))


@dataclass
class World:
    """What the stories act on: Airflow, the reviewers in OpenText, Prodigy, and the annotated dataset.

    ``step`` is told each milestone with its link; ``review_pause`` holds the first review back so a
    person can look at the waiting run and the inbox.
    """

    api: AirflowApi
    reviewer: Reviewer
    prodigy: ProdigyProject
    dataset: str
    data_dir: Path
    """Airflow's data folder (``PROJECT_DATA_DIR``): the intake folder requests name their sources in."""
    stack: Stack | None = None
    step: Step = print_step
    review_pause: float = 0.0
    timeout: float = 900.0

    def run_url(self, run: Mapping[str, Any]) -> str:
        return self.api.run_url(run["dag_id"], run["dag_run_id"])

    def for_dataset(self, run: Mapping[str, Any]) -> bool:
        return (run.get("conf") or {}).get("dataset") == self.dataset


@dataclass
class Journal:
    """What the stories did: each DAG's run, each approval given, and what each story produced."""

    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    approvals: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"runs": self.runs, "approvals": self.approvals, **self.results}


class Story(Protocol):
    """One flow's story: the DAGs it runs, the results it adds to the journal, and how it plays them."""

    dag_ids: ClassVar[tuple[str, ...]]
    results: ClassVar[tuple[str, ...]]

    def play(self, world: World, journal: Journal) -> None: ...


def open_task(
    world: World, run: Mapping[str, Any], process_key: str, journal: Journal
) -> tuple[dict[str, Any], list[str]]:
    """The run's open OpenText task once Airflow waits for it, with the waiting tasks' states.

    A wait that has not deferred is given ``DEFERRAL_GRACE_SECONDS`` to do so (a sensor defers after its
    first read). A run that ends before its OpenText task exists fails the flow.
    """
    found: dict[str, Any] = {}

    def waiting_for_reviewer(_run: Mapping[str, Any], tasks: list[dict[str, Any]]) -> bool:
        waits = {task_label(t): t["state"] for t in tasks if t["state"] in WAITING_STATES}
        found["waits"] = [f"{label} {state}" for label, state in waits.items()]
        if waits and "task" not in found:
            task = world.reviewer.find_task(process_key, {"dataset": world.dataset})
            found.update({"task": task, "at": time.monotonic()} if task else {})
        if "task" not in found:
            return False
        return "deferred" in waits.values() or time.monotonic() - found["at"] > DEFERRAL_GRACE_SECONDS

    ended = world.api.wait_for_run(
        run["dag_id"], run["dag_run_id"], world.timeout, until=waiting_for_reviewer, stack=world.stack
    )
    if "task" not in found:
        failed(world, ended, journal, f"before waiting for a {process_key} decision in OpenText")
    return found["task"], found["waits"]


def approve(
    world: World, task: Mapping[str, Any], waits: list[str], user: str, comment: str, journal: Journal
) -> None:
    """Approve the task as ``user`` with ``comment``, and note it in the journal."""
    world.reviewer.decide(task, user, "approved", comment)
    journal.approvals.append(
        {
            "task": task["name"],
            "airflow_waits": waits,
            "task_id": task["id"],
            "process_instance_id": task["processInstanceId"],
            "reviewer": user,
            "outcome": "approved",
            "comment": comment,
            "url": world.reviewer.task_url(task),
        }
    )


def finish(world: World, run: Mapping[str, Any], journal: Journal) -> dict[str, Any]:
    """Wait for the run to end; note it in the journal; a run that did not succeed fails the flow."""
    ended = world.api.wait_for_run(run["dag_id"], run["dag_run_id"], world.timeout, stack=world.stack)
    journal.runs[run["dag_id"]] = {
        "run_id": run["dag_run_id"],
        "state": ended["state"],
        "url": world.run_url(run),
    }
    if ended["state"] != "success":
        failed(world, ended, journal, "")
    return ended


def failed(world: World, run: Mapping[str, Any], journal: Journal, when: str) -> None:
    journal.runs[run["dag_id"]] = {
        "run_id": run["dag_run_id"],
        "state": run["state"],
        "url": world.run_url(run),
    }
    report = world.api.failure_report(run["dag_id"], run["dag_run_id"])
    raise FlowFailed(f"{run['dag_id']} run {run['dag_run_id']} ended {run['state']} {when}:\n{report}")


def annotate_stream(
    world: World, dataset: str, meta: Mapping[str, Any], team: Annotators, options: tuple[str, ...] = ()
) -> tuple[str, str]:
    """Serve the task stream Airflow wrote for ``dataset`` (its meta's ``stream``) to the sessions its meta
    names only, and let ``team`` answer it; returns the server's URL and the annotators' closing line."""
    if world.stack is None:
        raise StackError("serving a dataset's tasks needs the demo's stack")
    env = {**os.environ, "PRODIGY_ALLOWED_SESSIONS": ",".join(meta["sessions"])}
    url = world.prodigy.serve(world.stack, dataset, Path(meta["stream"]), free_port(), env, options)
    return url, world.prodigy.annotate(world.stack, url, dataset, team, env)


def wait_for_end(world: World, process_instance_id: str, end: str, what: str) -> dict[str, Any]:
    """The process's variables once it ended at ``end`` (``what`` names the wait in a timeout)."""

    def ended() -> dict[str, Any] | None:
        (process,) = world.reviewer.hook().historic_processes(
            processInstanceId=process_instance_id, includeProcessVariables="true"
        )
        if process.get("endActivityId") != end:
            return None
        return {v["name"]: v.get("value") for v in process.get("variables") or []}

    return wait_for(ended, timeout=world.timeout, what=what, interval=1, stack=world.stack)
