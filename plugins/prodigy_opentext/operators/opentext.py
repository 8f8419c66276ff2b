"""Operators for OpenText Workflow Service: deploy models, start processes, complete tasks, comment, and
work Airflow's own tasks of a process."""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, conf
from airflow.sdk.exceptions import AirflowFailException

from prodigy_opentext.core.payloads import Decision, ServiceTaskResult
from prodigy_opentext.exceptions import OpenTextError, OpenTextNotFoundError
from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook

if TYPE_CHECKING:
    from airflow.sdk import Context


class _OpenTextOperator(BaseOperator):
    """Holds the connection id and builds the hook only when the task runs."""

    def __init__(
        self, *, opentext_conn_id: str = OpenTextWorkflowHook.default_conn_name, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.opentext_conn_id = opentext_conn_id

    @cached_property
    def hook(self) -> OpenTextWorkflowHook:
        return OpenTextWorkflowHook(self.opentext_conn_id)


class OpenTextStartProcessOperator(_OpenTextOperator):
    """Start an OpenText process instance once per business key and return its id.

    A rerun finds the running or finished instance with the same ``business_key`` and returns that one.

    :param process_definition_key: the BPMN process id, e.g. ``annotation_batch_approval`` (templated).
    :param business_key: identifies the work item, e.g. ``batch-approval:ner_news:v3`` (templated).
    :param variables: start variables; Python types become OpenText's typed variables (templated).
    :param process_name: display name of the instance in OpenText (templated).
    :param attachments: ``{name: local path}`` of files attached to the instance, e.g. the review report
        reviewers open from their task; attached once, however often the task runs (templated).
    """

    template_fields: Sequence[str] = (
        "process_definition_key",
        "business_key",
        "variables",
        "process_name",
        "attachments",
    )
    template_fields_renderers = {"variables": "json", "attachments": "json"}

    def __init__(
        self,
        *,
        process_definition_key: str,
        business_key: str,
        variables: dict[str, Any] | None = None,
        process_name: str | None = None,
        attachments: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.process_definition_key = process_definition_key
        self.business_key = business_key
        self.variables = variables
        self.process_name = process_name
        self.attachments = attachments

    def execute(self, context: Context) -> str:
        files = {name: Path(path) for name, path in (self.attachments or {}).items()}
        missing = [f"{name} ({path})" for name, path in files.items() if not path.is_file()]
        if missing:
            raise AirflowFailException(
                f"cannot attach {', '.join(missing)} to {self.business_key}: no such file; the step that "
                "writes it must run first"
            )
        instance = self.hook.start_process(
            self.process_definition_key, self.business_key, self.variables, self.process_name
        )
        self.log.info("OpenText process instance for %s: %s", self.business_key, instance["id"])
        for name, path in files.items():
            content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
            attached = self.hook.add_attachment(instance["id"], name, path.read_bytes(), content_type)
            self.log.info("attached %s to %s (attachment %s)", name, instance["id"], attached.get("id"))
        return instance["id"]


class OpenTextCompleteTaskOperator(_OpenTextOperator):
    """Complete the open user task of a process instance, claiming it for ``assignee`` first.

    :param process_instance_id: the process instance (templated).
    :param task_definition_key: the BPMN user task id, e.g. ``sme_review`` (templated).
    :param outcome: the decision, e.g. ``approved`` (templated); OpenText stores it as the process variables
        ``outcome`` and ``<task_definition_key>_outcome``.
    :param variables: further process variables to set on completion (templated).
    :param assignee: the user (e-mail) who claims and completes the task (templated). OpenText lets a
        user act only as themselves: the connection (``opentext_conn_id``) must sign in as this user
        (``grant_type: password`` in its extra), and the user must be a candidate of the task.
    :param comment: a process comment added before completing (templated).
    """

    template_fields: Sequence[str] = (
        "process_instance_id",
        "task_definition_key",
        "outcome",
        "variables",
        "assignee",
        "comment",
    )

    def __init__(
        self,
        *,
        process_instance_id: str,
        task_definition_key: str,
        outcome: str | None = None,
        variables: dict[str, Any] | None = None,
        assignee: str | None = None,
        comment: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.process_instance_id = process_instance_id
        self.task_definition_key = task_definition_key
        self.outcome = outcome
        self.variables = variables
        self.assignee = assignee
        self.comment = comment

    def execute(self, context: Context) -> dict[str, Any]:
        open_tasks = [
            task
            for task in self.hook.list_tasks(
                processInstanceId=self.process_instance_id, taskDefinitionKey=self.task_definition_key
            )
            if task.get("taskDefinitionKey") == self.task_definition_key
        ]
        if len(open_tasks) != 1:
            if not open_tasks:
                raise OpenTextNotFoundError(
                    f"process instance {self.process_instance_id} has no open task "
                    f"{self.task_definition_key!r}"
                )
            ids = [task["id"] for task in open_tasks]
            raise ValueError(
                f"process instance {self.process_instance_id} has {len(ids)} open tasks "
                f"{self.task_definition_key!r} ({ids}); complete them by task id"
            )
        task = open_tasks[0]
        self.hook.decide_task(
            task, self.outcome, assignee=self.assignee, comment=self.comment, variables=self.variables
        )
        return {
            "task_id": task["id"],
            "outcome": self.outcome,
            "assignee": self.assignee or task.get("assignee"),
        }


class OpenTextCommentOperator(_OpenTextOperator):
    """Add a comment to a process instance (an audit note reviewers see) and return its id.

    :param process_instance_id: the process instance (templated).
    :param message: the comment text (templated).
    """

    template_fields: Sequence[str] = ("process_instance_id", "message")

    def __init__(self, *, process_instance_id: str, message: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.process_instance_id = process_instance_id
        self.message = message

    def execute(self, context: Context) -> str | None:
        return self.hook.add_comment(self.process_instance_id, self.message).get("id")


class OpenTextDeployModelsOperator(_OpenTextOperator):
    """Deploy BPMN models whose content differs from their latest deployed version.

    Returns the deployed ones as ``[{"key", "file", "version", "id"}]``; unchanged models are skipped.

    :param models: glob patterns of BPMN files (templated). Relative patterns are resolved against the
        project root, the parent of the DAGs folder, where ``include/`` lives.
    """

    template_fields: Sequence[str] = ("models",)

    def __init__(
        self, *, models: Sequence[str] = ("include/bpmn/*.bpmn", "include/bpmn/*.bpmn20.xml"), **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.models = models

    def model_files(self) -> list[Path]:
        project_root = Path(conf.get("core", "dags_folder")).parent
        patterns = [self.models] if isinstance(self.models, str) else list(self.models)
        files = sorted(
            {
                path
                for pattern in patterns
                for path in (
                    Path(pattern).parent.glob(Path(pattern).name)
                    if Path(pattern).is_absolute()
                    else project_root.glob(pattern)
                )
            }
        )
        if not files:
            raise FileNotFoundError(f"no BPMN model matches {patterns} (relative to {project_root})")
        return files

    def execute(self, context: Context) -> list[dict[str, Any]]:
        deployed = []
        for path in self.model_files():
            result = self.hook.deploy_model(path)
            if result["deployed"]:
                model = result["model"]
                deployed.append(
                    {
                        "key": result["key"],
                        "file": path.name,
                        "version": model.get("version"),
                        "id": model.get("id"),
                    }
                )
            else:
                self.log.info("%s unchanged (%s)", path.name, result["key"])
        return deployed


class OpenTextServiceTaskOperator(_OpenTextOperator):
    """Work Airflow's own task of a process, as an external worker does: wait (deferred) until the process
    reaches the user task ``task_definition_key`` (offered to the connection's own group, e.g.
    ``airflow-service``), let ``work`` say what to complete it with, complete it.

    ``work(decision, hook, **op_kwargs)`` gets the decision of the people before (who completed the last
    task, when, with which comments) and the operator's hook (its token reused;
    ``hook.decided_process(decision)`` gives the process variables the decision was read with, without
    reading them again where the operator read the decision itself), and returns a
    :class:`~prodigy_opentext.core.payloads.ServiceTaskResult`:
    the variables to complete the task with, and whether the work is ``done``. A model may loop back to
    people (the case sent back to its reviewers); then the operator waits for the task again, as often
    as the model comes back to it. Its XCom is the result's ``value``.

    :param process_instance_id: the process instance (templated).
    :param task_definition_key: Airflow's task in the model, e.g. ``check_decisions``.
    :param work: the callable that does the work.
    :param op_kwargs: keyword arguments for ``work`` (not templated: they carry annotated text).
    :param done_at: end events that mean the work was done before (a retry after the task completed, a
        cleared task): the operator succeeds there, with no value, instead of failing.
    :param done_while_open: tasks of the model after this one: a process waiting at one of them had this
        work done before, and the operator succeeds with no value instead of waiting.
    :param response_timeout: how long people have, from the process start (or from ``people_task``'s
        creation), before the wait fails.
    :param people_task: the people's task this work follows when it is not the model's first (e.g. the
        leads' review after QA escalated): their time counts from when it was created.
    :param poll_interval: seconds between two reads of OpenText while deferred.
    :param error_budget: seconds the deferred wait tolerates OpenText being unreachable before failing.
    """

    template_fields: Sequence[str] = ("process_instance_id",)

    def __init__(
        self,
        *,
        process_instance_id: str,
        task_definition_key: str,
        work: Callable[..., ServiceTaskResult],  # (decision, hook, **op_kwargs)
        op_kwargs: dict[str, Any] | None = None,
        done_at: Sequence[str] = (),
        done_while_open: Sequence[str] = (),
        people_task: str | None = None,
        response_timeout: timedelta = timedelta(days=7),
        poll_interval: float = 30.0,
        error_budget: float = 900.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.process_instance_id = process_instance_id
        self.task_definition_key = task_definition_key
        self.work = work
        self.op_kwargs = op_kwargs or {}
        self.done_at = tuple(done_at)
        self.done_while_open = tuple(done_while_open)
        self.people_task = people_task
        self.response_timeout = response_timeout
        self.poll_interval = poll_interval
        self.error_budget = error_budget

    def execute(self, context: Context) -> Any:
        return self._next()

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        status = event.get("status")
        if status == "decided":
            return self._work(event["decision"])
        if status == "timeout":
            raise AirflowFailException(
                f"OpenText process {self.process_instance_id} did not reach {self.task_definition_key!r} "
                f"by {event['deadline']} ({self.response_timeout} after its start, or after the work "
                "last sent it back to people)"
            )
        raise OpenTextError(**event["error"])

    def _next(self, since: datetime | None = None) -> Any:
        """Work the task if the process waits there, else defer until it does: people have
        ``response_timeout`` from the process start, or from ``since`` (the work sent it back to them)."""
        decision = self.hook.read_decision(self.process_instance_id, open_task_key=self.task_definition_key)
        if decision is not None:
            return self._work(decision)
        if self.done_while_open:
            later = {
                task.get("taskDefinitionKey")
                for task in self.hook.list_tasks(processInstanceId=self.process_instance_id)
            } & set(self.done_while_open)
            if later:
                self.log.info(
                    "OpenText process %s waits at %s: its work here was done before",
                    self.process_instance_id,
                    ", ".join(sorted(map(str, later))),
                )
                return None
        from prodigy_opentext.triggers.opentext import OpenTextProcessTrigger  # the triggerer's side

        started = (
            since
            or (self.people_task and self.hook.task_created_at(self.process_instance_id, self.people_task))
            or self.hook.process_started_at(self.process_instance_id)
            or datetime.now(UTC)
        )
        deadline = started + self.response_timeout
        self.log.info(
            "OpenText process %s is with people; waiting for %s (deferred) until %s",
            self.process_instance_id,
            self.task_definition_key,
            deadline,
        )
        self.defer(
            trigger=OpenTextProcessTrigger(
                process_instance_id=self.process_instance_id,
                open_task_key=self.task_definition_key,
                opentext_conn_id=self.opentext_conn_id,
                poll_interval=self.poll_interval,
                deadline=deadline.isoformat(),
                error_budget=self.error_budget,
            ),
            method_name="execute_complete",
        )

    def _work(self, decision: Decision) -> Any:
        if (
            decision["ended"]
            and not decision["delete_reason"]
            and decision["end_activity_id"] in self.done_at
        ):
            self.log.info(
                "OpenText process %s already ended at %s: its work was done before",
                self.process_instance_id,
                decision["end_activity_id"],
            )
            return None
        if decision["ended"]:
            raise AirflowFailException(
                f"OpenText process {self.process_instance_id} ended ({decision['delete_reason'] or 'at '}"
                f"{decision['end_activity_id'] or ''}) before it reached {self.task_definition_key!r}"
            )
        # Where this hook just read the decision, that read's task history says which tasks wait; a
        # decision from the trigger is older, so whether the task is still open is read again.
        seen = self.hook.seen_with(decision)
        waiting = seen.open_tasks(self.task_definition_key) if seen is not None else None
        if waiting is None:
            waiting = self.hook.list_tasks(
                processInstanceId=self.process_instance_id, taskDefinitionKey=self.task_definition_key
            )
        if not waiting:  # the process moved on between the read and now: look again
            self.log.info(
                "%s is no longer open in %s; waiting again",
                self.task_definition_key,
                self.process_instance_id,
            )
            return self._next()
        result = self.work(decision, self.hook, **self.op_kwargs)
        for task in waiting:
            self.hook.complete_task(task["id"], None, result["variables"])
        if result["done"]:
            return result["value"]
        self.log.info("%s: the process goes back to people; waiting again", self.task_definition_key)
        return self._next(since=datetime.now(UTC))
