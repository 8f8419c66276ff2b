"""Whether reviewers have decided on a process instance: the reads, and one driver for both hooks.

:func:`decision_probe` knows which reads to make and what their answers mean; it makes no call itself.
:class:`DecisionRead` steps it for a hook, which only sends each read its way (``requests`` in the sync hook,
``aiohttp`` in the async one) and reports the answer or the error back. So the sensor (sync) and the
trigger (async) read a decision the same way, errors included.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prodigy_opentext._opentext.paging import embedded_items, next_page_offset
from prodigy_opentext._opentext.variables import from_rest_variables, parse_timestamp
from prodigy_opentext.core.payloads import Comment, Decision
from prodigy_opentext.exceptions import OpenTextError, OpenTextNotFoundError


@dataclass(frozen=True)
class ApiCall:
    """One read the decision probe asks its hook to make."""

    path: str
    params: dict[str, Any] | None = None


# Tasks per page when the probe reads a process's task history (most processes hold a handful).
TASK_PAGE = 100


@dataclass
class ProbeSeen:
    """What a decision probe read on its way, besides the decision: the process instance (with its
    variables) and, where it looked at them, the process's tasks (open and finished, from its history)."""

    process: dict[str, Any] | None = None
    tasks: list[dict[str, Any]] | None = None

    def open_tasks(self, task_definition_key: str) -> list[dict[str, Any]] | None:
        """The process's open tasks of that definition when the probe read its tasks, else None."""
        if self.tasks is None:
            return None
        return [
            task
            for task in self.tasks
            if not task.get("endTime") and task.get("taskDefinitionKey") == task_definition_key
        ]


def comment_of(raw: Mapping[str, Any]) -> Comment:
    """A comment as OpenText lists it, reduced to who said what when."""
    return Comment(author=raw.get("author"), message=raw.get("message"), time=raw.get("time"))


def _process_tasks(process_instance_id: str) -> Generator[ApiCall, Any, list[dict[str, Any]]]:
    """Every task of the process, open (no ``endTime``) and finished, from its task history, page by page
    (one page for most processes)."""
    tasks: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        params = {
            "processInstanceId": process_instance_id,
            "sort": "startTime",
            "order": "asc",
            "offset": offset,
            "count": TASK_PAGE,
        }
        answer = yield ApiCall("/historic-task-instances", params)
        items = embedded_items(answer)
        tasks += items
        offset = next_page_offset(answer, offset, len(items), TASK_PAGE)
    return tasks


def _ended_at(task: Mapping[str, Any]) -> tuple[datetime, str]:
    return parse_timestamp(str(task["endTime"])), str(task.get("startTime") or "")


def decision_probe(
    process_instance_id: str,
    task_definition_key: str | None = None,
    decision_variable: str | None = None,
    open_task_key: str | None = None,
    seen: ProbeSeen | None = None,
) -> Generator[ApiCall, Any, Decision | None]:
    """Read whether a decision exists.

    A generator: it yields :class:`ApiCall` reads, receives their decoded JSON (or, thrown in, the
    :class:`OpenTextError` a read failed with) and returns the decision, or None while no decision
    exists. What counts as decided: the given task definition completed, else the given variable set,
    else (``open_task_key``) the process waiting at that task, Airflow's own, after people decided, else
    the instance ended. An instance that ends first is decided as well, so a cancelled process never
    leaves a wait hanging. An unknown instance is an error; comments a service no longer keeps for a
    finished instance (404) are none.

    Waiting at ``open_task_key`` is read from the process's task history, which holds its open tasks (no
    ``endTime``) beside the finished ones: one read says both whether the process waits there and who
    decided last. ``seen``, when given, gets the process and those tasks.
    """
    process_answer = yield ApiCall(
        "/historic-process-instances",
        {"processInstanceId": process_instance_id, "includeProcessVariables": "true"},
    )
    found = embedded_items(process_answer)
    if not found:
        raise OpenTextNotFoundError(f"process instance {process_instance_id} does not exist", status=404)
    process = found[0]
    if seen is not None:
        seen.process = process
    variables = from_rest_variables(process.get("variables"))
    ended = bool(process.get("endTime"))
    if open_task_key and not ended:
        tasks = yield from _process_tasks(process_instance_id)
        if seen is not None:
            seen.tasks = tasks
        if not any(not t.get("endTime") and t.get("taskDefinitionKey") == open_task_key for t in tasks):
            return None
        finished_tasks = sorted(
            (
                t
                for t in tasks
                if t.get("endTime")
                and (not task_definition_key or t.get("taskDefinitionKey") == task_definition_key)
            ),
            key=_ended_at,
            reverse=True,
        )
    elif (
        not ended
        and not task_definition_key
        and (not decision_variable or variables.get(decision_variable) is None)
    ):
        return None
    else:
        task_filter = {
            "processInstanceId": process_instance_id,
            "finished": "true",
            "sort": "endTime",
            "order": "desc",
        }
        if task_definition_key:
            task_filter["taskDefinitionKey"] = task_definition_key
        finished_tasks = embedded_items((yield ApiCall("/historic-task-instances", task_filter)))
    task = finished_tasks[0] if finished_tasks else {}
    if task_definition_key and not task and not ended:
        return None
    try:
        comments = yield ApiCall(f"/process-instances/{process_instance_id}/comments")
    except OpenTextNotFoundError:  # a service may keep comments only while the instance runs
        comments = []
    if decision_variable:
        outcome = variables.get(decision_variable)
    elif task_definition_key:
        outcome = task.get("outcome") or variables.get(f"{task_definition_key}_outcome")
    else:
        outcome = variables.get("outcome")
    return Decision(
        process_instance_id=process_instance_id,
        watched=(
            "variable"
            if decision_variable
            else "task"
            if task_definition_key
            else "open_task"
            if open_task_key and not ended
            else "process"
        ),
        business_key=process.get("businessKey"),
        outcome=outcome,
        ended=ended,
        end_activity_id=process.get("endActivityId"),
        delete_reason=process.get("deleteReason"),
        task_definition_key=task.get("taskDefinitionKey"),
        task_id=task.get("id"),
        approver=task.get("assignee"),
        decided_at=task.get("endTime") or process.get("endTime"),
        comments=[
            comment_of(c) for c in (comments if isinstance(comments, list) else embedded_items(comments))
        ],
    )


class DecisionRead:
    """The decision probe stepped for a hook: the one driver of the sync and the async hook.

    The hook sends :attr:`pending` and reports back with :meth:`answered` or :meth:`failed` until
    :attr:`pending` is None; then :attr:`decision` holds the result (see either hook's ``read_decision``)
    and :attr:`seen` what the reads saw besides it.
    A failed read goes back into the probe, which either carries on (comments gone with a finished
    instance) or re-raises it from :meth:`failed`.
    """

    def __init__(
        self,
        process_instance_id: str,
        task_definition_key: str | None = None,
        decision_variable: str | None = None,
        open_task_key: str | None = None,
    ) -> None:
        self.seen = ProbeSeen()
        self._probe = decision_probe(
            process_instance_id, task_definition_key, decision_variable, open_task_key, self.seen
        )
        self.pending: ApiCall | None = None
        self.decision: Decision | None = None
        self._step(lambda: next(self._probe))

    def answered(self, reply: Any) -> None:
        self._step(lambda: self._probe.send(reply))

    def failed(self, error: OpenTextError) -> None:
        self._step(lambda: self._probe.throw(error))

    def _step(self, advance: Callable[[], ApiCall]) -> None:
        try:
            self.pending = advance()
        except StopIteration as done:
            self.pending, self.decision = None, done.value
