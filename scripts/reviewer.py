"""A business reviewer working in OpenText, through the project's own OpenText hook.

Each reviewer acts as themselves: their hook's connection uses the OAuth password grant, so OpenText
records them as the one who claimed, commented and decided. What OpenText refuses raises
:class:`~scripts.processes.StackError`, as every other part of a run reports a failure. The hook is
imported when first used, so importing this module does not import Airflow.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scripts.configure_airflow_home import REPO
from scripts.launchers import OpenTextClient
from scripts.processes import Log, Stack, StackError, say, wait_for

if TYPE_CHECKING:
    from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook

BPMN_MODELS = REPO / "include" / "bpmn"
CONNECTION_NUMBERS = itertools.count()
"""Numbers the reviewers' connection ids, so no two hooks of this process share one."""


class Reviewer:
    """Reviewers of one OpenText tenant: deploy the models, find open tasks, decide them as a user."""

    def __init__(self, client: OpenTextClient, log: Log = say) -> None:
        self.client = client
        self.log = log
        self._hooks: dict[str | None, OpenTextWorkflowHook] = {}

    def hook(self, user: str | None = None) -> OpenTextWorkflowHook:
        """The hook acting as ``user`` (None: the client itself), on a connection of this process only."""
        if user not in self._hooks:
            from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook

            conn_id = f"opentext_reviewer_{next(CONNECTION_NUMBERS)}"
            os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = self.client.connection(user)
            self._hooks[user] = OpenTextWorkflowHook(conn_id)
        return self._hooks[user]

    def deploy_models(self, folder: Path = BPMN_MODELS) -> dict[str, dict[str, Any]]:
        """Deploy every ``*.bpmn20.xml`` in ``folder`` that changed; returns the models by process key."""
        deployed = {}
        with opentext_failures():
            for path in sorted(folder.glob("*.bpmn20.xml")):
                result = self.hook().deploy_model(path)
                deployed[result["key"]] = result["model"]
        return deployed

    def open_tasks(self, **filters: Any) -> list[dict[str, Any]]:
        """Open tasks, oldest first, with their process variables; ``filters`` as OpenText takes them."""
        with opentext_failures():
            return self.hook().list_tasks(
                sort="createTime", order="asc", includeProcessVariables=True, **filters
            )

    def find_task(self, process_key: str, variables: Mapping[str, Any]) -> dict[str, Any] | None:
        """The oldest open task of a ``process_key`` instance with (at least) these process variables."""
        for task in self.open_tasks(processDefinitionKey=process_key):
            values = {v["name"]: v.get("value") for v in task.get("variables") or []}
            if all(values.get(name) == value for name, value in variables.items()):
                return task
        return None

    def wait_for_task(
        self, process_key: str, variables: Mapping[str, Any], timeout: float, stack: Stack | None = None
    ) -> dict[str, Any]:
        described = ", ".join(f"{k}={v}" for k, v in variables.items())
        return wait_for(
            lambda: self.find_task(process_key, variables),
            timeout=timeout,
            what=f"an open {process_key} task ({described})",
            interval=1,
            stack=stack,
        )

    def task_url(self, task: Mapping[str, Any]) -> str:
        """The task's page in the reviewer inbox."""
        return f"{self.client.inbox_url}/tasks/{task['id']}"

    def decide(
        self,
        task: Mapping[str, Any],
        user: str,
        outcome: str,
        comment: str,
        variables: Mapping[str, Any] | None = None,
        task_variables: Mapping[str, Any] | None = None,
    ) -> None:
        """Claim the task, comment on its process and complete it with ``outcome`` (and the ``variables``
        a task form submits, ``task_variables`` local to the task), as ``user``."""
        with opentext_failures():
            self.hook(user).decide_task(
                task,
                outcome,
                assignee=user,
                comment=comment,
                variables=variables,
                task_variables=task_variables,
            )
        self.log(f"    {user} {outcome} '{task['name']}': {comment}")


@contextmanager
def opentext_failures() -> Iterator[None]:
    """Raise what OpenText refused or did not answer as :class:`StackError`; its message names the call."""
    from prodigy_opentext.exceptions import OpenTextError

    try:
        yield
    except OpenTextError as error:
        raise StackError(str(error)) from error
