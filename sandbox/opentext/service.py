"""The workflow service behind the HTTP API and the inbox: models, instances, tasks, variables, comments,
history and timers, with Flowable's rules and messages.

Every change to an instance happens under one lock: load its serialized engine state, let the engine
move, then write the new state, tasks, variables and history in one SQLite transaction. If the engine
refuses (an expression fails, no gateway flow matches) nothing is written.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sandbox.opentext.clock import SandboxClock, resolve_due_date
from sandbox.opentext.directory import Directory
from sandbox.opentext.engine import (
    ExecutionError,
    ModelError,
    ProcessModel,
    ProcessRun,
    UserTaskView,
    parse_model,
)
from sandbox.opentext.errors import BadRequest, Conflict, Forbidden, NotFound
from sandbox.opentext.http_tasks import HttpTaskSender
from sandbox.opentext.storage import Store
from sandbox.opentext.variables import Variable, parse_variables

log = logging.getLogger(__name__)

DEFAULT_PRIORITY = 50
PROCESS_DELETED = "process instance deleted"
MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024
ATTACHMENT_FIELDS = "id, process_instance_id, task_id, name, description, type, user_id, size, time"
"""An attachment's columns but its content (read only when asked for)."""


@dataclass(frozen=True)
class PageRequest:
    """``offset``/``count``/``sort``/``order`` of a list call."""

    offset: int = 0
    count: int = 10
    sort: str | None = None
    order: str = "asc"


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    total: int
    request: PageRequest


MODEL_SORTS = {"id": "id", "key": "key", "name": "name", "version": "version", "created": "created"}
INSTANCE_SORTS = {
    "id": "id",
    "processDefinitionId": "process_definition_id",
    "processDefinitionKey": "process_definition_key",
    "businessKey": "business_key",
    "startTime": "start_time",
}
HISTORIC_INSTANCE_SORTS = {
    **INSTANCE_SORTS,
    "processInstanceId": "id",
    "endTime": "end_time",
    "duration": "(end_time - start_time)",
}
TASK_SORTS = {
    "id": "id",
    "name": "name",
    "priority": "priority",
    "assignee": "assignee",
    "createTime": "create_time",
    "dueDate": "due_date",
    "processInstanceId": "process_instance_id",
    "taskDefinitionKey": "task_definition_key",
}
HISTORIC_TASK_SORTS = {
    **TASK_SORTS,
    "taskInstanceId": "id",
    "startTime": "create_time",
    "endTime": "end_time",
    "duration": "(end_time - create_time)",
}


_LATEST_VERSION = "version = (SELECT MAX(version) FROM models AS m WHERE m.key = models.key)"


def decode_model_content(content: str) -> bytes:
    """``modelContent`` arrives as BPMN XML text or, as OpenText's examples send it, base64-encoded."""
    text = content.strip().lstrip("\ufeff")
    if text.startswith("<"):
        return text.encode("utf-8")
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if not decoded.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        raise BadRequest("modelContent is neither BPMN XML nor base64-encoded BPMN XML")
    return decoded


def _names(value: Any) -> list[str]:
    """Candidate groups/users: a comma-separated string (possibly from an expression) or a list."""
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def _order_by(request: PageRequest, sorts: dict[str, str]) -> str:
    if request.order not in ("asc", "desc"):
        raise BadRequest(f"Value for param 'order' is not valid, '{request.order}' is not asc or desc")
    if request.sort is None:
        return f"seq {request.order}"
    if request.sort not in sorts:
        raise BadRequest(
            f"Value for param 'sort' is not valid, '{request.sort}' is not a valid property "
            f"(use one of {', '.join(sorted(sorts))})"
        )
    return f"{sorts[request.sort]} {request.order}, seq {request.order}"


def _equal(column: str, value: Any) -> tuple[str, list[Any]]:
    return f"{column} = ?", [value]


class WorkflowService:
    """One tenant's workflow service: its models, instances and tasks (in its own store), acting for
    users of that tenant's directory."""

    def __init__(
        self,
        store: Store,
        clock: SandboxClock,
        directory: Directory,
        tenant_id: str,
        http: HttpTaskSender | None = None,
    ):
        self.store = store
        self.clock = clock
        self.directory = directory
        self.tenant_id = tenant_id
        self.http = http or HttpTaskSender()
        self.lock = threading.RLock()
        self._models: dict[str, ProcessModel] = {}

    # -- models ------------------------------------------------------------------------------------

    def deploy_model(self, content: Any, model_type: Any, model_id: Any, tenant_id: str | None) -> dict:
        if model_type != "xml":
            raise BadRequest(
                f"modelType '{model_type}' is not supported by the sandbox; deploy BPMN with 'xml'"
            )
        if not isinstance(content, str) or not content.strip():
            raise BadRequest("modelContent is required: the BPMN XML, plain or base64-encoded")
        if model_id is not None and not isinstance(model_id, str):
            raise BadRequest("modelId must be a string")
        xml = decode_model_content(content)
        try:
            model = parse_model(xml)
        except ModelError as error:
            raise BadRequest(str(error)) from None
        with self.lock, self.store.transaction():
            version = (
                self.store.scalar("SELECT MAX(version) FROM models WHERE key = ?", [model.key]) or 0
            ) + 1
            deployment_id = str(uuid.uuid4())
            self.store.insert(
                "models",
                {
                    "id": model_id or str(uuid.uuid4()),
                    "key": model.key,
                    "name": model.name,
                    "version": version,
                    "process_definition_id": f"{model.key}:{version}:{deployment_id}",
                    "deployment_id": deployment_id,
                    "model_type": model_type,
                    "content": xml.decode("utf-8"),
                    "start_messages": list(model.start_messages),
                    "has_none_start": int(model.has_none_start),
                    "tenant_id": tenant_id,
                    "created": self.clock.now(),
                },
            )
            return self.store.query_one("SELECT * FROM models WHERE deployment_id = ?", [deployment_id])

    def list_models(self, key: str | None, latest_version: bool, request: PageRequest) -> Page:
        conditions = []
        if key is not None:
            conditions.append(_equal("key", key))
        if latest_version:
            conditions.append((_LATEST_VERSION, []))
        return self._page("models", conditions, request, MODEL_SORTS)

    def model(self, model_id: str) -> dict:
        """The latest version deployed under ``model_id``."""
        found = self.store.query_one(
            "SELECT * FROM models WHERE id = ? ORDER BY version DESC LIMIT 1", [model_id]
        )
        if found is None:
            raise NotFound(f"Could not find a model with id '{model_id}'.")
        return found

    def _model(self, definition: dict) -> ProcessModel:
        definition_id = definition["process_definition_id"]
        if definition_id not in self._models:
            self._models[definition_id] = parse_model(definition["content"].encode("utf-8"))
        return self._models[definition_id]

    def _definition(self, key: str | None, definition_id: str | None, message: str | None) -> dict:
        if definition_id is not None:
            found = self.store.query_one(
                "SELECT * FROM models WHERE process_definition_id = ?", [definition_id]
            )
            if found is None:
                raise NotFound(f"no deployed process definition found with id '{definition_id}'")
            return found
        if key is not None:
            found = self.store.query_one(
                "SELECT * FROM models WHERE key = ? ORDER BY version DESC LIMIT 1", [key]
            )
            if found is None:
                raise NotFound(f"no processes deployed with key '{key}'")
            return found
        found = self.store.query_one(
            f"SELECT * FROM models WHERE {_LATEST_VERSION} "
            "AND EXISTS (SELECT 1 FROM json_each(models.start_messages) WHERE value = ?) "
            "ORDER BY created DESC LIMIT 1",
            [message],
        )
        if found is None:
            raise NotFound(
                "Cannot start process instance by message: "
                f"no subscription to message with name '{message}' found."
            )
        return found

    # -- process instances -------------------------------------------------------------------------

    def start_instance(
        self,
        *,
        process_definition_key: Any = None,
        process_definition_id: Any = None,
        message: Any = None,
        business_key: Any = None,
        name: Any = None,
        variables: Any = None,
        user: str,
        tenant_id: str | None,
    ) -> dict:
        selectors = {
            "processDefinitionKey": process_definition_key,
            "processDefinitionId": process_definition_id,
            "message": message,
        }
        given = {field: value for field, value in selectors.items() if value is not None}
        if len(given) != 1:
            raise BadRequest(
                "Exactly one of processDefinitionId, processDefinitionKey or message should be set"
                + (f" (got {', '.join(given)})" if given else "")
            )
        for field, value in [*given.items(), ("businessKey", business_key), ("name", name)]:
            if value is not None and not isinstance(value, str):
                raise BadRequest(f"{field} must be a string")
        start_variables = [Variable(v.name, v.type, v.value) for v in parse_variables(variables)]
        definition = self._definition(process_definition_key, process_definition_id, message)
        values = {v.name: v.value for v in start_variables}
        try:
            run = ProcessRun.start(self._model(definition), values, message)
        except ExecutionError as error:
            raise BadRequest(str(error)) from None
        instance_id = str(uuid.uuid4())
        now = self.clock.now()
        with self.lock, self.store.transaction():
            self.store.insert(
                "process_instances",
                {
                    "id": instance_id,
                    "process_definition_id": definition["process_definition_id"],
                    "process_definition_key": definition["key"],
                    "process_definition_version": definition["version"],
                    "process_definition_name": definition["name"],
                    "name": name,
                    "business_key": business_key,
                    "tenant_id": tenant_id,
                    "start_user_id": user,
                    "start_activity_id": run.start_activity_id,
                    "start_time": now,
                    "state": "",
                },
            )
            self._store_variables(instance_id, start_variables)
            self._save_run(self._instance(instance_id), run, now)
        return self._instance(instance_id)

    def _instance(self, instance_id: str, kind: str = "process instance") -> dict:
        """Any instance, running or ended."""
        found = self.store.query_one("SELECT * FROM process_instances WHERE id = ?", [instance_id])
        if found is None:
            raise NotFound(f"Could not find a {kind} with id '{instance_id}'.")
        return found

    def running_instance(self, instance_id: str) -> dict:
        found = self.store.query_one(
            "SELECT * FROM process_instances WHERE id = ? AND end_time IS NULL", [instance_id]
        )
        if found is None:
            raise NotFound(f"Could not find a process instance with id '{instance_id}'.")
        return found

    def historic_instance(self, instance_id: str) -> dict:
        return self._instance(instance_id, "historic process instance")

    def activity_name(self, instance: dict, activity_id: str | None) -> str | None:
        """The name the instance's model gives an activity (``end_approved`` → ``Batch approved``)."""
        if activity_id is None:
            return None
        model = self._model(self._definition(None, instance["process_definition_id"], None))
        return model.activity_names.get(activity_id)

    def process_tasks(self, instance_id: str) -> list[dict]:
        """Every task of an instance, open or ended, in the order the process reached them."""
        self._instance(instance_id)
        return self.store.query(
            "SELECT * FROM tasks WHERE process_instance_id = ? ORDER BY seq", [instance_id]
        )

    def list_instances(self, filters: dict[str, Any], request: PageRequest, finished: bool | None) -> Page:
        """Runtime list (``finished=False``) or history (``None``: all, ``True``: only ended ones)."""
        conditions = []
        columns = {
            "id": "id",
            "processInstanceId": "id",
            "processDefinitionKey": "process_definition_key",
            "processDefinitionId": "process_definition_id",
            "businessKey": "business_key",
            "startedBy": "start_user_id",
            "tenantId": "tenant_id",
        }
        for field, column in columns.items():
            if filters.get(field) is not None:
                conditions.append(_equal(column, filters[field]))
        if filters.get("suspended") is not None:
            conditions.append(_equal("suspended", int(filters["suspended"])))
        if finished is not None:
            conditions.append((f"end_time IS {'NOT ' if finished else ''}NULL", []))
        sorts = INSTANCE_SORTS if finished is False else HISTORIC_INSTANCE_SORTS
        return self._page("process_instances", conditions, request, sorts)

    def set_suspended(self, instance_id: str, action: Any) -> dict:
        if action not in ("suspend", "activate"):
            raise BadRequest(f"Invalid action: '{action}'. Use suspend or activate")
        suspend = action == "suspend"
        with self.lock:
            instance = self.running_instance(instance_id)
            if bool(instance["suspended"]) == suspend:
                state = "suspended" if suspend else "active"
                raise Conflict(f"Process instance with id '{instance_id}' is already {state}")
            self.store.update("process_instances", "id", instance_id, {"suspended": int(suspend)})
        return self.running_instance(instance_id)

    def delete_instance(self, instance_id: str, delete_reason: str | None) -> None:
        reason = delete_reason or PROCESS_DELETED
        with self.lock:
            instance = self.running_instance(instance_id)
            run = self._restore(instance)
            run.cancel()
            now = self.clock.now()
            with self.store.transaction():
                self._end_open_tasks(instance_id, now, {}, reason)
                self.store.update(
                    "process_instances",
                    "id",
                    instance_id,
                    {
                        "end_time": now,
                        "delete_reason": reason,
                        "activity_id": None,
                        "next_timer_due": None,
                        "state": run.serialize(),
                    },
                )

    # -- engine state ------------------------------------------------------------------------------

    def _restore(self, instance: dict, values: dict[str, Any] | None = None) -> ProcessRun:
        if values is None:
            values = self.variable_values(instance["id"])
        return ProcessRun.restore(instance["state"], values)

    def _save_run(
        self, instance: dict, run: ProcessRun, now: float, delete_reasons: dict[str, str] | None = None
    ) -> None:
        """Write the engine's new state: open tasks it created, tasks it removed, and the end if reached."""
        open_tasks = {view.id: view for view in run.open_user_tasks()}
        known = {
            row["id"]
            for row in self.store.query(
                "SELECT id FROM tasks WHERE process_instance_id = ? AND end_time IS NULL", [instance["id"]]
            )
        }
        for task_id, view in open_tasks.items():
            if task_id not in known:
                self._create_task(instance, view, now)
        self._end_open_tasks(instance["id"], now, delete_reasons or {}, "deleted", keep=set(open_tasks))
        due = run.next_timer_due()
        changes: dict[str, Any] = {
            "activity_id": run.current_activity_id(),
            "next_timer_due": None if due is None else due.timestamp(),
        }
        if run.ended:
            changes.update(end_time=now, end_activity_id=run.end_activity_id, next_timer_due=None)
        calls = run.new_http_calls()  # before the state is serialized: it remembers them as sent
        changes["state"] = run.serialize()
        self.store.update("process_instances", "id", instance["id"], changes)
        execution = {
            "processInstanceId": instance["id"],
            "processDefinitionKey": instance["process_definition_key"],
            "businessKey": instance["business_key"],
        }
        for call in calls:
            self.http.send_later(call, execution, lambda: self._stored_variables(instance["id"]))

    def _stored_variables(self, instance_id: str) -> dict[str, Any]:
        """The process variables as stored, once the step holding the lock is done."""
        with self.lock:
            return self.variable_values(instance_id)

    def _create_task(self, instance: dict, view: UserTaskView, now: float) -> None:
        attributes = view.attributes
        try:
            due_date = resolve_due_date(attributes.get("dueDate"), now)
        except ValueError as error:
            raise BadRequest(f"task '{view.definition_key}': dueDate {error}") from None
        try:
            priority = int(attributes.get("priority", DEFAULT_PRIORITY))
        except (TypeError, ValueError):
            raise BadRequest(
                f"task '{view.definition_key}': priority {attributes['priority']!r} is not a number"
            ) from None
        assignee = attributes.get("assignee") or None
        self.store.insert(
            "tasks",
            {
                "id": view.id,
                "process_instance_id": instance["id"],
                "process_definition_id": instance["process_definition_id"],
                "process_definition_key": instance["process_definition_key"],
                "business_key": instance["business_key"],
                "task_definition_key": view.definition_key,
                "name": view.name,
                "description": view.description,
                "assignee": None if assignee is None else str(assignee),
                "owner": attributes.get("owner"),
                "candidate_groups": _names(attributes.get("candidateGroups")),
                "candidate_users": _names(attributes.get("candidateUsers")),
                "outcomes": view.outcomes,
                "form_key": attributes.get("formKey"),
                "category": attributes.get("category"),
                "priority": priority,
                "due_date": due_date,
                "tenant_id": instance["tenant_id"],
                "create_time": now,
                "claim_time": now if assignee else None,
                "initiator_can_complete": int(
                    str(attributes.get("initiatorCanCompleteTask", "true")).strip().lower() != "false"
                ),
            },
        )

    def _end_open_tasks(
        self,
        instance_id: str,
        now: float,
        delete_reasons: dict[str, str],
        default_reason: str,
        keep: set[str] = frozenset(),
    ) -> None:
        for row in self.store.query(
            "SELECT id FROM tasks WHERE process_instance_id = ? AND end_time IS NULL", [instance_id]
        ):
            if row["id"] not in keep:
                reason = delete_reasons.get(row["id"], default_reason)
                self.store.update("tasks", "id", row["id"], {"end_time": now, "delete_reason": reason})

    # -- variables ---------------------------------------------------------------------------------

    def variable_values(self, instance_id: str) -> dict[str, Any]:
        return {v.name: v.value for v in self.variables_of(instance_id)}

    def variables_of(self, instance_id: str) -> list[Variable]:
        rows = self.store.query(
            "SELECT name, type, value FROM variables WHERE process_instance_id = ? ORDER BY name",
            [instance_id],
        )
        return [Variable(row["name"], row["type"], row["value"]) for row in rows]

    def _store_variables(self, instance_id: str, variables: Sequence[Variable]) -> None:
        for variable in variables:
            self.store.upsert(
                "variables",
                {
                    "process_instance_id": instance_id,
                    "name": variable.name,
                    "type": variable.type,
                    "value": variable.value,
                },
                ["process_instance_id", "name"],
            )

    def runtime_variables(self, instance_id: str) -> list[Variable]:
        self.running_instance(instance_id)
        return self.variables_of(instance_id)

    def create_variables(self, instance_id: str, items: Any) -> list[Variable]:
        """POST: new variables only; an existing name is a conflict, as in Flowable."""
        variables = [Variable(v.name, v.type, v.value) for v in parse_variables(items)]
        if not variables:
            raise BadRequest("Request did not contain a list of variables to create.")
        with self.lock:
            self.running_instance(instance_id)
            existing = set(self.variable_values(instance_id))
            for variable in variables:
                if variable.name in existing:
                    raise Conflict(
                        f"Variable '{variable.name}' is already present on process instance '{instance_id}'."
                    )
            with self.store.transaction():
                self._store_variables(instance_id, variables)
        return variables

    def set_variables(self, instance_id: str, items: Any) -> list[Variable]:
        """PUT: create or update the given variables."""
        variables = [Variable(v.name, v.type, v.value) for v in parse_variables(items)]
        with self.lock:
            self.running_instance(instance_id)
            with self.store.transaction():
                self._store_variables(instance_id, variables)
        return variables

    def set_variable(self, instance_id: str, name: str, item: Any) -> Variable:
        if not isinstance(item, dict):
            raise BadRequest("the body must be a variable object {name, type, value}")
        if item.get("name") not in (None, name):
            raise BadRequest(
                f"Variable name in the body ('{item.get('name')}') does not match the URL ('{name}')"
            )
        return self.set_variables(instance_id, [{**item, "name": name}])[0]

    # -- comments ----------------------------------------------------------------------------------

    def comments(self, instance_id: str) -> list[dict]:
        self._instance(instance_id)
        return self.store.query(
            "SELECT * FROM comments WHERE process_instance_id = ? ORDER BY seq", [instance_id]
        )

    def add_comment(self, instance_id: str, message: Any, author: str, task_id: str | None = None) -> dict:
        if not isinstance(message, str) or not message.strip():
            raise BadRequest('Comment text is required: send {"message": "..."}')
        self._instance(instance_id)
        comment_id = str(uuid.uuid4())
        self.store.insert(
            "comments",
            {
                "id": comment_id,
                "process_instance_id": instance_id,
                "task_id": task_id,
                "author": author,
                "message": message,
                "time": self.clock.now(),
            },
        )
        return self.store.query_one("SELECT * FROM comments WHERE id = ?", [comment_id])

    # -- attachments -------------------------------------------------------------------------------

    def attachments(self, instance_id: str) -> list[dict]:
        """The instance's attachments, oldest first, without their content."""
        self._instance(instance_id)
        return self.store.query(
            f"SELECT {ATTACHMENT_FIELDS} FROM attachments WHERE process_instance_id = ? ORDER BY seq",
            [instance_id],
        )

    def add_attachment(
        self,
        instance_id: str,
        name: str | None,
        content: bytes,
        content_type: str | None,
        user: str,
        description: str | None = None,
        task_id: str | None = None,
    ) -> dict:
        if not name or not name.strip():
            raise BadRequest("An attachment needs a name: send the file with a file name, or a 'name' field")
        if len(content) > MAX_ATTACHMENT_BYTES:
            raise BadRequest(f"Attachment '{name}' is {len(content)} bytes; at most {MAX_ATTACHMENT_BYTES}")
        self._instance(instance_id)
        attachment_id = str(uuid.uuid4())
        self.store.insert(
            "attachments",
            {
                "id": attachment_id,
                "process_instance_id": instance_id,
                "task_id": task_id,
                "name": name.strip(),
                "description": description,
                "type": content_type or "application/octet-stream",
                "user_id": user,
                "size": len(content),
                "content": content,
                "time": self.clock.now(),
            },
        )
        return self.attachment(instance_id, attachment_id)

    def attachment(self, instance_id: str, attachment_id: str) -> dict:
        found = self.store.query_one(
            f"SELECT {ATTACHMENT_FIELDS} FROM attachments WHERE id = ? AND process_instance_id = ?",
            [attachment_id, instance_id],
        )
        if found is None:
            raise NotFound(f"Could not find an attachment with id '{attachment_id}' on '{instance_id}'.")
        return found

    def attachment_content(self, instance_id: str, attachment_id: str) -> tuple[dict, bytes]:
        row = self.attachment(instance_id, attachment_id)
        content = self.store.query_one("SELECT content FROM attachments WHERE id = ?", [attachment_id])
        return row, bytes(content["content"]) if content else b""

    # -- tasks -------------------------------------------------------------------------------------

    def runtime_task(self, task_id: str) -> dict:
        found = self.store.query_one("SELECT * FROM tasks WHERE id = ? AND end_time IS NULL", [task_id])
        if found is None:
            raise NotFound(f"Could not find a task with id '{task_id}'.")
        return found

    def historic_task(self, task_id: str) -> dict:
        found = self.store.query_one("SELECT * FROM tasks WHERE id = ?", [task_id])
        if found is None:
            raise NotFound(f"Could not find a historic task instance with id '{task_id}'.")
        return found

    def is_suspended(self, task: dict) -> bool:
        return bool(
            self.store.scalar(
                "SELECT suspended FROM process_instances WHERE id = ?", [task["process_instance_id"]]
            )
        )

    def _candidate_condition(self, user: str) -> tuple[str, list[Any]]:
        groups = self.groups_of(user)
        placeholders = ", ".join("?" for _ in groups) or "NULL"
        return (
            "EXISTS (SELECT 1 FROM json_each(tasks.candidate_users) WHERE value = ?) OR "
            f"EXISTS (SELECT 1 FROM json_each(tasks.candidate_groups) WHERE value IN ({placeholders}))",
            [user, *groups],
        )

    def list_tasks(self, filters: dict[str, Any], request: PageRequest, finished: bool | None) -> Page:
        """Runtime tasks (``finished=False``) or task history (``None``: all, ``True``: only ended)."""
        conditions = []
        columns = {
            "processInstanceId": "process_instance_id",
            "processDefinitionKey": "process_definition_key",
            "processDefinitionId": "process_definition_id",
            "businessKey": "business_key",
            "processBusinessKey": "business_key",
            "processInstanceBusinessKey": "business_key",
            "assignee": "assignee",
            "taskAssignee": "assignee",
            "owner": "owner",
            "taskOwner": "owner",
            "name": "name",
            "taskName": "name",
            "taskDefinitionKey": "task_definition_key",
            "taskId": "id",
            "taskInstanceId": "id",
        }
        for field, column in columns.items():
            if filters.get(field) is not None:
                conditions.append(_equal(column, filters[field]))
        for field in ("nameLike", "taskNameLike"):
            if filters.get(field) is not None:
                conditions.append(("name LIKE ?", [filters[field]]))
        if filters.get("unassigned"):
            conditions.append(("assignee IS NULL", []))
        if filters.get("candidateGroup") is not None:
            condition = "EXISTS (SELECT 1 FROM json_each(tasks.candidate_groups) WHERE value = ?)"
            if not filters.get("ignoreAssignee"):
                condition += " AND assignee IS NULL"
            conditions.append((condition, [filters["candidateGroup"]]))
        if filters.get("candidateUser") is not None:
            sql, params = self._candidate_condition(filters["candidateUser"])
            conditions.append((f"assignee IS NULL AND ({sql})", params))
        if filters.get("candidateOrAssigned") is not None:
            user = filters["candidateOrAssigned"]
            sql, params = self._candidate_condition(user)
            conditions.append((f"assignee = ? OR (assignee IS NULL AND ({sql}))", [user, *params]))
        if finished is not None:
            conditions.append((f"end_time IS {'NOT ' if finished else ''}NULL", []))
        sorts = TASK_SORTS if finished is False else HISTORIC_TASK_SORTS
        return self._page("tasks", conditions, request, sorts)

    def _open_task_of_active_instance(self, task_id: str, verb: str) -> dict:
        task = self.runtime_task(task_id)
        if self.is_suspended(task):
            raise Conflict(f"Cannot {verb} task '{task_id}': its process instance is suspended")
        return task

    def claim_task(self, task_id: str, assignee: Any, user: str) -> dict:
        """``user`` claims for themselves (``assignee`` is them) or unclaims (null). Claiming another's
        task is a conflict; claiming for someone else, or a task one may not act on, is forbidden."""
        if assignee is not None and not isinstance(assignee, str):
            raise BadRequest("assignee must be a string (a user's e-mail) or null")
        if assignee is not None and assignee != user:
            raise Forbidden(f"User '{user}' cannot claim task '{task_id}' for '{assignee}'")
        with self.lock:
            task = self._open_task_of_active_instance(task_id, "claim")
            if assignee is not None and task["assignee"] not in (None, assignee):
                raise Conflict(f"Task '{task_id}' is already claimed by someone else.")
            if assignee is None and task["assignee"] not in (None, user):
                raise Forbidden(
                    f"User '{user}' cannot unclaim task '{task_id}': it is claimed by '{task['assignee']}'"
                )
            if assignee is None and task["delegation_state"] == "pending":
                raise BadRequest(f"Task '{task_id}' is delegated: resolve it instead of unclaiming it.")
            self._check_may_act(task, user, "claim" if assignee is not None else "unclaim")
            claim_time = None if assignee is None else (task["claim_time"] or self.clock.now())
            self.store.update("tasks", "id", task_id, {"assignee": assignee, "claim_time": claim_time})
        return self.runtime_task(task_id)

    def delegate_task(self, task_id: str, assignee: Any, user: str) -> dict:
        """The assignee (or a candidate) hands the task to ``assignee``; it comes back on ``resolve``."""
        if not isinstance(assignee, str) or not assignee:
            raise BadRequest("An assignee is required when delegating a task.")
        with self.lock:
            task = self._open_task_of_active_instance(task_id, "delegate")
            self._check_may_act(task, user, "delegate")
            self.store.update(
                "tasks",
                "id",
                task_id,
                {
                    "owner": task["owner"] or task["assignee"],
                    "assignee": assignee,
                    "delegation_state": "pending",
                },
            )
        return self.runtime_task(task_id)

    def resolve_task(self, task_id: str, user: str) -> dict:
        with self.lock:
            task = self._open_task_of_active_instance(task_id, "resolve")
            if task["delegation_state"] != "pending":
                raise BadRequest(f"Task '{task_id}' is not delegated, so it cannot be resolved.")
            if task["assignee"] != user:
                raise Forbidden(
                    f"User '{user}' cannot resolve task '{task_id}': it is delegated to '{task['assignee']}'"
                )
            self.store.update(
                "tasks", "id", task_id, {"assignee": task["owner"], "delegation_state": "resolved"}
            )
        return self.runtime_task(task_id)

    def complete_task(self, task_id: str, outcome: Any, variables: Any, user: str) -> dict:
        """Complete a task as ``user``; ``outcome`` also becomes the variables ``outcome`` and
        ``<taskKey>_outcome``.

        The completing user becomes the assignee in history when the task was not claimed. Only the
        assignee, or a candidate of an unclaimed task, may complete it (403 otherwise).
        """
        if outcome is not None and (not isinstance(outcome, str) or not outcome.strip()):
            raise BadRequest("outcome must be a non-empty string")
        parsed = parse_variables(variables)
        with self.lock:
            task = self._open_task_of_active_instance(task_id, "complete")
            if task["delegation_state"] == "pending":
                raise BadRequest("A delegated task cannot be completed, but should be resolved instead.")
            if task["assignee"] not in (None, user):
                raise Forbidden(
                    f"User '{user}' cannot complete task '{task_id}': it is assigned to '{task['assignee']}'"
                )
            self._check_may_act(task, user, "complete")
            instance = self.running_instance(task["process_instance_id"])
            process_variables = [Variable(v.name, v.type, v.value) for v in parsed if v.scope == "global"]
            if outcome is not None:
                process_variables += [
                    Variable("outcome", "string", outcome),
                    Variable(f"{task['task_definition_key']}_outcome", "string", outcome),
                ]
            values = self.variable_values(instance["id"])
            values.update({v.name: v.value for v in process_variables})
            run = self._restore(instance, values)
            try:
                run.complete_user_task(task_id)
            except ExecutionError as error:
                raise BadRequest(f"Completing task '{task['task_definition_key']}' failed: {error}") from None
            now = self.clock.now()
            local = {**task["local_variables"], **{v.name: v.rest() for v in parsed if v.scope == "local"}}
            with self.store.transaction():
                self._store_variables(instance["id"], process_variables)
                self.store.update(
                    "tasks",
                    "id",
                    task_id,
                    {
                        "end_time": now,
                        "assignee": task["assignee"] or user,
                        "claim_time": task["claim_time"] or now,
                        "outcome": outcome,
                        "local_variables": local,
                    },
                )
                self._save_run(instance, run, now)
        return self.historic_task(task_id)

    # -- timers and clock --------------------------------------------------------------------------

    def fire_due_timers(self) -> int:
        """Fire every timer that is due (by the sandbox clock); returns how many instances moved."""
        due = self.store.query(
            "SELECT id FROM process_instances WHERE end_time IS NULL AND suspended = 0 "
            "AND next_timer_due IS NOT NULL AND next_timer_due <= ?",
            [time.time()],
        )
        moved = 0
        for row in due:
            with self.lock:
                instance = self.store.query_one(
                    "SELECT * FROM process_instances WHERE id = ? AND end_time IS NULL AND suspended = 0 "
                    "AND next_timer_due <= ?",
                    [row["id"], time.time()],
                )
                if instance is None:
                    continue
                moved += self._fire_timers_of(instance)
        return moved

    def _fire_timers_of(self, instance: dict) -> int:
        run = self._restore(instance)
        try:
            firings = run.fire_due_timers()
            with self.store.transaction():
                reasons = {
                    task_id: f"boundary event ({firing.boundary_event_id})"
                    for firing in firings
                    for task_id in firing.interrupted_task_ids
                }
                self._save_run(instance, run, self.clock.now(), reasons)
        except (ExecutionError, BadRequest) as error:
            # Like a job that exhausted its retries: keep the instance, stop retrying, say why.
            log.error("timer of process instance %s failed and was dropped: %s", instance["id"], error)
            self.store.update("process_instances", "id", instance["id"], {"next_timer_due": None})
            return 0
        return 1 if firings else 0

    def advance_clock(self, seconds: Any) -> dict:
        """Move the sandbox clock forward; timers come ``seconds`` closer and due ones fire now."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise BadRequest("advance_seconds must be a non-negative number")
        with self.lock:
            self.clock.advance(seconds)
            for instance in self.store.query(
                "SELECT * FROM process_instances WHERE end_time IS NULL AND next_timer_due IS NOT NULL"
            ):
                run = self._restore(instance)
                run.shift_timers(seconds)
                due = run.next_timer_due()
                self.store.update(
                    "process_instances",
                    "id",
                    instance["id"],
                    {"state": run.serialize(), "next_timer_due": None if due is None else due.timestamp()},
                )
        self.fire_due_timers()
        return {"now": self.clock.now(), "offset_seconds": self.clock.offset_seconds}

    # -- users -------------------------------------------------------------------------------------

    def groups_of(self, email: str) -> list[str]:
        """The groups a user belongs to in this tenant's directory."""
        return self.directory.groups_of(self.tenant_id, email)

    def _check_may_act(self, task: dict, user: str, verb: str) -> None:
        """Refuse (403) a user who is neither the task's assignee nor one of its candidates, and the
        process's initiator where the model says ``initiatorCanCompleteTask="false"``."""
        candidate = (
            task["assignee"] == user
            or user in task["candidate_users"]
            or bool(set(self.groups_of(user)) & set(task["candidate_groups"]))
            or (task["assignee"] is None and not task["candidate_users"] and not task["candidate_groups"])
        )
        if not candidate:
            offered = ", ".join([*task["candidate_groups"], *task["candidate_users"]]) or "nobody"
            raise Forbidden(
                f"User '{user}' cannot {verb} task '{task['id']}' ({task['task_definition_key']}): it is "
                f"offered to {offered} and the user is not a candidate"
            )
        if not task["initiator_can_complete"]:
            instance = self._instance(task["process_instance_id"])
            if instance["start_user_id"] == user:
                raise Forbidden(
                    f"User '{user}' started process instance '{instance['id']}' and cannot {verb} its task "
                    f"'{task['task_definition_key']}' (the model sets initiatorCanCompleteTask to false)"
                )

    # -- paging ------------------------------------------------------------------------------------

    def _page(self, table: str, conditions: list, request: PageRequest, sorts: dict[str, str]) -> Page:
        if request.offset < 0 or request.count < 0:
            raise BadRequest("offset and count must not be negative")
        rows, total = self.store.page(
            table, conditions, _order_by(request, sorts), request.offset, request.count
        )
        return Page(rows, total, request)
