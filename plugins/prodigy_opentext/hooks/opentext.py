"""Hook for OpenText Workflow Service (OpenText's Flowable-based BPMN engine), over ``requests``.

The protocol itself (settings, retries, answers, paging, variables, models, the decision probe) is plain
Python in :mod:`prodigy_opentext._opentext`, shared with the async hook the triggers use
(:mod:`prodigy_opentext.hooks.opentext_async`); only the transport is written here.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.sdk.log import mask_secret

from prodigy_opentext._opentext.answers import TokenCache, decode_answer, query_params, unreachable
from prodigy_opentext._opentext.decisions import DecisionRead, ProbeSeen
from prodigy_opentext._opentext.models import (
    content_checksum,
    model_process_key,
    model_xml_of,
    read_model_xml,
)
from prodigy_opentext._opentext.paging import embedded_items, next_page_offset
from prodigy_opentext._opentext.settings import OpenTextSettings
from prodigy_opentext._opentext.variables import (
    from_rest_variable,
    from_rest_variables,
    parse_timestamp,
    to_rest_variables,
)
from prodigy_opentext.core.approvals import duplicate_start_reason, standing_instances
from prodigy_opentext.core.payloads import Decision
from prodigy_opentext.exceptions import (
    OpenTextAuthError,
    OpenTextError,
    OpenTextNotFoundError,
    OpenTextUnavailableError,
)
from prodigy_opentext.failures import ConnectionMissing

if TYPE_CHECKING:
    import requests

T = TypeVar("T")


class OpenTextWorkflowHook(BaseHook):
    """Talk to OpenText Workflow Service's REST API with an OAuth2 client-credentials token.

    Connection fields: host = root URL (``https://na-1-dev.api.opentext.com``), login/password = client id and
    secret; extra: ``tenant_id``, ``grant_type``, optional ``username``/``password``, ``timeout``, ``verify``,
    ``max_retries`` and ``retry_budget`` (seconds spent retrying one call on 429/5xx/connection errors).
    """

    conn_name_attr = "opentext_conn_id"
    default_conn_name = "opentext_default"
    conn_type = "opentext_workflow"
    hook_name = "OpenText Workflow Service"

    def __init__(self, opentext_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.opentext_conn_id = opentext_conn_id
        self._tokens = TokenCache()
        self._last_read: DecisionRead | None = None

    @cached_property
    def settings(self) -> OpenTextSettings:
        try:
            connection = self.get_connection(self.opentext_conn_id)
        except AirflowNotFoundException:
            raise ConnectionMissing.named(self.opentext_conn_id, self.conn_type) from None
        return OpenTextSettings.from_connection(connection)

    def get_conn(self) -> requests.Session:
        return self.session

    @cached_property
    def session(self) -> requests.Session:
        import requests

        session = requests.Session()
        session.verify = self.settings.verify
        session.headers["Accept"] = "application/json"
        return session

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.request("GET", "/process-instances", params={"count": 1})
        except (OpenTextError, ValueError) as err:
            return False, str(err)
        return True, f"Connected to {self.settings.root_url} (tenant {self.settings.tenant_id})"

    # Transport

    def _send(self, method: str, url: str, raw: bool = False, **kwargs: Any) -> Any:
        """One HTTP call: the decoded JSON of its answer (``raw``: the answer's bytes), or its error."""
        import requests

        try:
            response = self.session.request(method, url, timeout=self.settings.timeout, **kwargs)
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as err:
            raise unreachable(err, method=method, url=url) from err
        if raw and response.status_code < 400:
            return response.content
        return decode_answer(
            response.status_code, response.text, response.headers.get("Retry-After"), method=method, url=url
        )

    def _bearer(self) -> dict[str, str]:
        now = time.monotonic()
        token = self._tokens.current(now)
        if token is None:
            self.log.debug("Fetching an OpenText token for tenant %s", self.settings.tenant_id)
            answer = self._send("POST", self.settings.token_url, data=self.settings.token_form())
            token = self._tokens.store(answer, now)
            mask_secret(token)
        return {"Authorization": f"Bearer {token}"}

    def _exchange(
        self, method: str, path: str, params: Mapping[str, Any] | None, body: Any, **options: Any
    ) -> Any:
        """One call with a bearer token; a 401 fetches a new token and tries once more. ``options`` go to
        :meth:`_send` (``raw``, ``files``, ``data``)."""
        url, params = self.settings.api_url(path), query_params(params)
        try:
            return self._send(method, url, params=params, json=body, headers=self._bearer(), **options)
        except OpenTextAuthError as err:
            if err.status != 401:
                raise
            self.log.info("OpenText refused the cached token; fetching a new one")
            self._tokens.clear()
            return self._send(method, url, params=params, json=body, headers=self._bearer(), **options)

    def _retrying(self, operation: Callable[[], T]) -> T:
        started, attempt = time.monotonic(), 0
        while True:
            try:
                return operation()
            except OpenTextUnavailableError as err:
                delay = self.settings.retry.next_delay(attempt, time.monotonic() - started, err.retry_after)
                if delay is None:
                    raise
                self.log.warning("%s; retrying in %.1f s", err, delay)
                time.sleep(delay)
                attempt += 1

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        retry: bool = True,
    ) -> Any:
        """Call ``{root}/workflow/v1{path}`` and return the decoded JSON.

        :param retry: retry on 429, 5xx and connection errors. Pass False for a non-idempotent call whose
            caller checks, before trying again, whether the first attempt landed.
        """

        def operation() -> Any:
            return self._exchange(method, path, params, json)

        return self._retrying(operation) if retry else operation()

    def paginate(
        self, path: str, params: Mapping[str, Any] | None = None, count: int = 100
    ) -> Iterator[dict]:
        """Every item of a HAL list, page by page (``offset``/``count``)."""
        offset: int | None = 0
        while offset is not None:
            body = self.request("GET", path, params={**(params or {}), "offset": offset, "count": count})
            items = embedded_items(body)
            yield from items
            offset = next_page_offset(body, offset, len(items), count)

    def _post_once(self, path: str, body: Any, landed: Callable[[], T | None], **options: Any) -> T:
        """POST something that must happen once: before trying again, look whether the last try landed.
        ``options`` go to the call (``files``)."""
        tried = False

        def operation() -> Any:
            nonlocal tried
            if tried and (found := landed()) is not None:
                return found
            tried = True
            return self._exchange("POST", path, None, body, **options)

        return self._retrying(operation)

    # Models

    def list_models(self, key: str | None = None, latest_version: bool = False) -> list[dict[str, Any]]:
        params = {"key": key} if key else {}
        if latest_version:
            params["latestVersion"] = "true"
        return list(self.paginate("/runtime/models", params))

    def latest_model(self, key: str) -> dict[str, Any] | None:
        models = self.list_models(key, latest_version=True)
        return max(models, key=lambda model: int(model.get("version") or 0)) if models else None

    def deploy_model(self, path_or_xml: str | Path) -> dict[str, Any]:
        """Deploy a BPMN model unless its latest deployed version has the same content.

        Returns ``{"key", "deployed": bool, "model": <OpenText's model record>}``.
        """
        xml = read_model_xml(path_or_xml)
        key = model_process_key(xml)
        checksum = content_checksum(xml)

        def unchanged() -> dict[str, Any] | None:
            latest = self.latest_model(key)
            if latest is None:
                return None
            if "modelContent" not in latest:  # lists leave the content out; the model itself has it
                latest = self.request("GET", f"/runtime/models/{latest['id']}")
            deployed_xml = model_xml_of(latest)
            return latest if deployed_xml and content_checksum(deployed_xml) == checksum else None

        current = unchanged()
        if current is not None:
            return {"key": key, "deployed": False, "model": current}
        encoded = base64.b64encode(xml.encode("utf-8")).decode("ascii")
        model = self._post_once("/runtime/models", {"modelType": "xml", "modelContent": encoded}, unchanged)
        self.log.info("Deployed BPMN model %s (version %s)", key, model.get("version"))
        return {"key": key, "deployed": True, "model": model}

    # Process instances

    def start_process(
        self,
        process_definition_key: str,
        business_key: str,
        variables: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        """Start a process instance once per business key: a running or finished one is returned instead.

        OpenText does not make a businessKey unique, so starters that race (several workers, retried
        runs) converge: after starting, each waits the connection's ``start_settle_seconds`` (1 s) for
        starts in flight to land, then takes the earliest running instance with the key (by start time,
        then id) as the one, cancels its own instance if that is not it, and returns the one. Every
        starter picks the same instance, so one stays running whatever the number of workers.

        Three calls for a new instance: the history (running and finished instances alike) before, the
        start, the running instances after (the runtime, which has every start that landed).
        """
        body: dict[str, Any] = {
            "processDefinitionKey": process_definition_key,
            "businessKey": business_key,
            "variables": to_rest_variables(variables),
        }
        if name:
            body["name"] = name

        where = {"processDefinitionKey": process_definition_key, "businessKey": business_key}

        def running() -> dict[str, Any] | None:
            return _earliest(self.find_processes(**where))

        found = self.find_by_business_key(process_definition_key, business_key)
        if found is not None:
            self.log.info(
                "Process %s with business key %s exists: %s",
                process_definition_key,
                business_key,
                found["id"],
            )
            return found
        started = self._post_once(
            "/process-instances",
            body,
            lambda: self.find_by_business_key(process_definition_key, business_key),
        )
        time.sleep(self.settings.start_settle_seconds)
        the_one = running() or started
        if the_one["id"] != started["id"]:
            self.log.warning(
                "Process %s with business key %s was started twice at once: keeping %s, cancelling %s",
                process_definition_key,
                business_key,
                the_one["id"],
                started["id"],
            )
            self.cancel_process(started["id"], duplicate_start_reason(business_key, the_one["id"]))
        return the_one

    def find_by_business_key(self, process_definition_key: str, business_key: str) -> dict[str, Any] | None:
        """The running instance with this business key (the earliest started, should several run), else
        the most recently started finished one, leaving out duplicates cancelled after a start race).

        One read: the history holds running instances (no ``endTime``) beside finished ones.
        """
        where = {"processDefinitionKey": process_definition_key, "businessKey": business_key}
        instances = self.historic_processes(**where, sort="startTime", order="desc")
        running = _earliest([process for process in instances if not process.get("endTime")])
        if running is not None:
            return running
        finished = standing_instances(instances)
        return dict(finished[0]) if finished else None

    def get_process(self, process_instance_id: str, include_variables: bool = True) -> dict[str, Any]:
        params = {"includeProcessVariables": "true"} if include_variables else None
        return self.request("GET", f"/process-instances/{process_instance_id}", params=params)

    def find_processes(self, **filters: Any) -> list[dict[str, Any]]:
        """Running process instances matching OpenText's filters (``processDefinitionKey``…)."""
        return list(self.paginate("/process-instances", filters))

    def cancel_process(self, process_instance_id: str, reason: str | None = None) -> None:
        params = {"deleteReason": reason} if reason else None
        self.request("DELETE", f"/process-instances/{process_instance_id}", params=params)

    # Tasks

    def list_tasks(self, **filters: Any) -> list[dict[str, Any]]:
        """Open tasks matching OpenText's filters (``processInstanceId``, ``assignee``…)."""
        return list(self.paginate("/tasks", filters))

    def get_task(self, task_id: str) -> dict[str, Any]:
        return self.request("GET", f"/tasks/{task_id}")

    def claim_task(self, task_id: str, assignee: str) -> None:
        self.request("POST", f"/tasks/{task_id}", json={"action": "claim", "assignee": assignee})

    def delegate_task(self, task_id: str, assignee: str) -> None:
        self.request("POST", f"/tasks/{task_id}", json={"action": "delegate", "assignee": assignee})

    def complete_task(
        self,
        task_id: str,
        outcome: str | None = None,
        variables: Mapping[str, Any] | None = None,
        task_variables: Mapping[str, Any] | None = None,
    ) -> None:
        """Complete a task once: a retry after a lost answer finds the task already finished in history.
        ``task_variables`` are local to the task: its history keeps them as they were given."""
        local = [{**item, "scope": "local"} for item in to_rest_variables(task_variables)]
        body: dict[str, Any] = {"action": "complete", "variables": to_rest_variables(variables) + local}
        if outcome is not None:
            body["outcome"] = outcome

        def finished() -> dict[str, Any] | None:
            try:
                task = self.request("GET", f"/historic-task-instances/{task_id}")
            except OpenTextNotFoundError:
                return None
            return task if task.get("endTime") else None

        self._post_once(f"/tasks/{task_id}", body, finished)

    def decide_task(
        self,
        task: Mapping[str, Any],
        outcome: str | None = None,
        *,
        assignee: str | None = None,
        comment: str | None = None,
        variables: Mapping[str, Any] | None = None,
        task_variables: Mapping[str, Any] | None = None,
    ) -> None:
        """Decide an open task as a reviewer does: claim it for ``assignee`` (unless it is theirs already),
        comment on its process, then complete it with ``outcome``; each step happens once on retries."""
        if assignee and task.get("assignee") != assignee:
            self.claim_task(task["id"], assignee)
        if comment:
            self.add_comment(task["processInstanceId"], comment)
        self.complete_task(task["id"], outcome, variables, task_variables)

    # Variables

    def get_variables(self, process_instance_id: str) -> dict[str, Any]:
        items = self.request("GET", f"/process-instances/{process_instance_id}/variables")
        return from_rest_variables(items)

    def set_variables(self, process_instance_id: str, values: Mapping[str, Any]) -> None:
        """Create or update process variables, each with its OpenText type."""
        for item in to_rest_variables(values):
            self.request(
                "PUT", f"/process-instances/{process_instance_id}/variables/{item['name']}", json=item
            )

    # Comments

    def list_comments(self, process_instance_id: str) -> list[dict[str, Any]]:
        answer = self.request("GET", f"/process-instances/{process_instance_id}/comments")
        return answer if isinstance(answer, list) else embedded_items(answer)

    def add_comment(self, process_instance_id: str, message: str) -> dict[str, Any]:
        """Add a comment once: a retry after a lost answer finds the comment already there."""

        def posted() -> dict[str, Any] | None:
            same = [c for c in self.list_comments(process_instance_id) if c.get("message") == message]
            return same[-1] if same else None

        return self._post_once(
            f"/process-instances/{process_instance_id}/comments", {"message": message}, posted
        )

    # Attachments

    def list_attachments(self, process_instance_id: str) -> list[dict[str, Any]]:
        answer = self.request("GET", f"/process-instances/{process_instance_id}/attachments")
        return answer if isinstance(answer, list) else embedded_items(answer)

    def add_attachment(
        self,
        process_instance_id: str,
        name: str,
        content: bytes,
        content_type: str = "application/octet-stream",
    ) -> dict[str, Any]:
        """Attach a file once: a retry after a lost answer finds the attachment (same name and size)."""

        def attached() -> dict[str, Any] | None:
            same = [
                a
                for a in self.list_attachments(process_instance_id)
                if a.get("name") == name and a.get("size") == len(content)
            ]
            return same[-1] if same else None

        files = {"file": (name, content, content_type)}
        return self._post_once(
            f"/process-instances/{process_instance_id}/attachments", None, attached, files=files
        )

    def attachment_content(self, process_instance_id: str, attachment_id: str) -> bytes:
        path = f"/process-instances/{process_instance_id}/attachments/{attachment_id}/content"
        return self._retrying(lambda: self._exchange("GET", path, None, None, raw=True))

    # History

    def historic_processes(self, **filters: Any) -> list[dict[str, Any]]:
        return list(self.paginate("/historic-process-instances", filters))

    def get_historic_process(self, process_instance_id: str) -> dict[str, Any]:
        return self.request("GET", f"/historic-process-instances/{process_instance_id}")

    def process_started_at(self, process_instance_id: str) -> datetime | None:
        """When OpenText started the process instance (None when it does not say)."""
        started = self.get_historic_process(process_instance_id).get("startTime")
        return parse_timestamp(started) if started else None

    def task_created_at(self, process_instance_id: str, task_definition_key: str) -> datetime | None:
        """When the process's open task ``task_definition_key`` was created (None when none is open)."""
        for task in self.list_tasks(
            processInstanceId=process_instance_id, taskDefinitionKey=task_definition_key
        ):
            if task.get("taskDefinitionKey") == task_definition_key and task.get("createTime"):
                return parse_timestamp(task["createTime"])
        return None

    def historic_tasks(self, **filters: Any) -> list[dict[str, Any]]:
        return list(self.paginate("/historic-task-instances", filters))

    def last_completion(self, process_instance_id: str, task_definition_key: str) -> dict[str, Any] | None:
        """The latest finished ``task_definition_key`` task of the process, with ``task_variables``: the
        variables local to it (what its form submitted, kept by its history); None when none finished."""
        done = [
            task
            for task in self.historic_tasks(
                processInstanceId=process_instance_id,
                taskDefinitionKey=task_definition_key,
                includeTaskLocalVariables="true",
            )
            if task.get("taskDefinitionKey") == task_definition_key and task.get("endTime")
        ]
        if not done:
            return None
        last = max(done, key=lambda task: task["endTime"])
        local = [v for v in last.get("variables") or [] if v.get("scope") == "local"]
        return {**last, "task_variables": {v["name"]: from_rest_variable(v) for v in local}}

    # Identity

    def user_groups(self, user: str) -> list[str]:
        """The groups ``user`` belongs to in the tenant's directory (``/identity/groups?member=``)."""
        return [str(group["id"]) for group in self.paginate("/identity/groups", {"member": user})]

    # Decisions

    def read_decision(
        self,
        process_instance_id: str,
        task_definition_key: str | None = None,
        decision_variable: str | None = None,
        open_task_key: str | None = None,
    ) -> Decision | None:
        """The reviewers' decision on a process instance, or None while they have not decided
        (:func:`~prodigy_opentext._opentext.decisions.decision_probe` says what counts)."""
        read = DecisionRead(process_instance_id, task_definition_key, decision_variable, open_task_key)
        while read.pending is not None:
            try:
                reply = self.request("GET", read.pending.path, params=read.pending.params)
            except OpenTextError as err:
                read.failed(err)
            else:
                read.answered(reply)
        self._last_read = read
        return read.decision

    def seen_with(self, decision: Decision) -> ProbeSeen | None:
        """What this hook's last :meth:`read_decision` saw besides ``decision`` (the process with its
        variables; its tasks, open and finished, where it read them), or None when ``decision`` came from
        elsewhere (a trigger's event, an older read): what the same moment's reads said, not read again."""
        read = self._last_read
        return read.seen if read is not None and read.decision is decision else None

    def decided_process(self, decision: Decision) -> dict[str, Any]:
        """The process instance of ``decision`` with its variables: as read with the decision when this
        hook read it (the variables the decision was made with), else as OpenText holds it now."""
        seen = self.seen_with(decision)
        if seen is not None and seen.process is not None:
            return seen.process
        pid = decision["process_instance_id"]
        found = self.historic_processes(processInstanceId=pid, includeProcessVariables="true")
        if not found:
            raise OpenTextNotFoundError(f"process instance {pid} does not exist", status=404)
        return found[0]


def _earliest(instances: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The instance that stands among running ones with one business key: the earliest started (then by
    id)."""
    if not instances:
        return None
    return min(instances, key=lambda process: (str(process.get("startTime") or ""), process["id"]))
