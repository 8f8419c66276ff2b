"""A small client of Airflow's REST API (``/api/v2``): the calls a person makes in the UI.

Unpause, trigger, wait for a run with progress lines, task instances, XCom, task logs and a failure report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import requests

from scripts.processes import Log, Stack, StackError, say, wait_for

TERMINAL_RUN_STATES = frozenset({"success", "failed"})
UNFINISHED_TASK_STATES = frozenset({"failed", "upstream_failed"})
REQUEST_TIMEOUT = 30


class AirflowApi:
    """The calls a person makes in the UI, through Airflow's REST API (``/api/v2``, bearer token)."""

    def __init__(self, url: str, username: str, password: str) -> None:
        self.url = url.rstrip("/")
        self.username = username
        self.password = password
        self.http = requests.Session()
        self._reported_states: dict[tuple[str, str, str], str] = {}

    def _login(self) -> None:
        response = requests.post(
            f"{self.url}/auth/token",
            json={"username": self.username, "password": self.password},
            timeout=REQUEST_TIMEOUT,
        )
        if not response.ok:
            raise StackError(
                f"Airflow login as {self.username} failed: {response.status_code} {response.text}"
            )
        self.http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """A call to ``/api/v2`` + path; logs in first and again once on 401; errors name the call."""
        if "Authorization" not in self.http.headers:
            self._login()
        url = f"{self.url}/api/v2{path}"
        response = self.http.request(method, url, timeout=REQUEST_TIMEOUT, **kwargs)
        if response.status_code == 401:
            self._login()
            response = self.http.request(method, url, timeout=REQUEST_TIMEOUT, **kwargs)
        if not response.ok:
            raise StackError(f"{method} {url} answered {response.status_code}: {response.text[:1000]}")
        return response.json() if response.content else None

    def healthy(self) -> bool:
        health = self.request("GET", "/monitor/health")
        parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        return all((health.get(part) or {}).get("status") == "healthy" for part in parts)

    def run_url(self, dag_id: str, run_id: str) -> str:
        """The run's page in the Airflow UI."""
        return f"{self.url}/dags/{dag_id}/runs/{requests.utils.quote(run_id, safe='')}"

    # DAGs

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", f"/dags/{dag_id}")
        except StackError as error:
            if " answered 404" in str(error):
                return None
            raise

    def import_errors(self) -> list[dict[str, Any]]:
        return self.request("GET", "/importErrors")["import_errors"]

    def wait_for_dags(self, dag_ids: tuple[str, ...], timeout: float, stack: Stack | None = None) -> None:
        """Wait until the dag-processor has parsed every DAG; an import error fails at once."""

        def parsed() -> bool:
            missing = [dag_id for dag_id in dag_ids if not self.dag(dag_id)]
            errors = self.import_errors() if missing else []
            if errors:
                traces = "\n".join(f"{e['filename']}:\n{e['stack_trace']}" for e in errors)
                raise StackError(f"the DAGs {', '.join(missing)} did not load; import errors:\n{traces}")
            return not missing

        wait_for(parsed, timeout=timeout, what=f"the DAGs {', '.join(dag_ids)}", interval=2, stack=stack)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})

    def wait_until_idle(self, dag_id: str, timeout: float, stack: Stack | None = None) -> None:
        """Wait until a just-unpaused DAG's due scheduled run, if any, exists and has finished."""

        def idle() -> bool:
            next_run = (self.dag(dag_id) or {}).get("next_dagrun_run_after")
            due = next_run is not None and _parse_time(next_run) <= datetime.now(UTC)
            active = self.runs(dag_id, state=["queued", "running"])
            return not due and not active

        wait_for(idle, timeout=timeout, what=f"{dag_id}'s scheduled run to finish", interval=2, stack=stack)

    # Runs

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> dict[str, Any]:
        body = {"logical_date": None, "conf": dict(conf or {})}
        return self.request("POST", f"/dags/{dag_id}/dagRuns", json=body)

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{requests.utils.quote(run_id, safe='')}")

    def runs(self, dag_id: str, **params: Any) -> list[dict[str, Any]]:
        """Runs of the DAG, oldest first; params filter as the API does (``state=[...]``, ``run_type``)."""
        params = {"order_by": "run_after", "limit": 100, **params}
        return self.request("GET", f"/dags/{dag_id}/dagRuns", params=params)["dag_runs"]

    def wait_for_new_run(
        self,
        dag_id: str,
        matches: Callable[[dict[str, Any]], bool],
        timeout: float,
        stack: Stack | None = None,
    ) -> dict[str, Any]:
        """The first run of ``dag_id`` that ``matches`` (for runs another DAG or an asset started)."""
        return wait_for(
            lambda: next((run for run in self.runs(dag_id) if matches(run)), None),
            timeout=timeout,
            what=f"a run of {dag_id}",
            interval=2,
            stack=stack,
        )

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float,
        *,
        until: Callable[[dict[str, Any], list[dict[str, Any]]], bool] | None = None,
        log: Log = say,
        stack: Stack | None = None,
    ) -> dict[str, Any]:
        """Wait until the run finishes (or ``until(run, task_instances)`` holds), logging task changes."""

        def check() -> dict[str, Any] | None:
            run = self.run(dag_id, run_id)
            tasks = self.task_instances(dag_id, run_id)
            for task in tasks:
                key = (dag_id, run_id, task_label(task))
                if task["state"] and self._reported_states.get(key) != task["state"]:
                    self._reported_states[key] = task["state"]
                    log(f"    {dag_id} {key[2]}: {task['state']}")
            done = until(run, tasks) if until else run["state"] in TERMINAL_RUN_STATES
            return run if done or run["state"] in TERMINAL_RUN_STATES else None

        return wait_for(check, timeout=timeout, what=f"run {run_id} of {dag_id}", interval=2, stack=stack)

    # Task instances

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/dags/{dag_id}/dagRuns/{requests.utils.quote(run_id, safe='')}/taskInstances"
        return self.request("GET", path, params={"limit": 100})["task_instances"]

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1
    ) -> Any:
        path = (
            f"/dags/{dag_id}/dagRuns/{requests.utils.quote(run_id, safe='')}/taskInstances/{task_id}"
            f"/xcomEntries/{key}"
        )
        return self.request("GET", path, params={"map_index": map_index, "deserialize": True})["value"]

    def task_log(self, dag_id: str, run_id: str, task: Mapping[str, Any]) -> str:
        """The task's log for its latest try, one line per record."""
        path = (
            f"/dags/{dag_id}/dagRuns/{requests.utils.quote(run_id, safe='')}/taskInstances/"
            f"{task['task_id']}/logs/{max(task.get('try_number') or 1, 1)}"
        )
        body = self.request(
            "GET", path, params={"map_index": task.get("map_index", -1), "full_content": True}
        )
        return "\n".join(_log_line(record) for record in body.get("content") or [])

    def failure_report(self, dag_id: str, run_id: str, tail: int = 40) -> str:
        """Each failed task of the run with the end of its log: what to read when a run did not succeed."""
        lines = []
        tasks = sorted(self.task_instances(dag_id, run_id), key=lambda t: t["state"] != "failed")
        for task in tasks:
            if task["state"] in UNFINISHED_TASK_STATES:
                lines.append(f"--- {dag_id} / {task_label(task)}: {task['state']}")
                if task["state"] == "failed":
                    lines.extend(self.task_log(dag_id, run_id, task).splitlines()[-tail:])
        return "\n".join(lines) or f"{dag_id} {run_id}: no failed task"


def task_label(task: Mapping[str, Any]) -> str:
    index = task.get("map_index", -1)
    return task["task_id"] if index is None or index < 0 else f"{task['task_id']}[{index}]"


def _log_line(record: Any) -> str:
    """One structured task-log record as a line; an exception as its type, message and innermost frames."""
    if not isinstance(record, dict):
        return str(record)
    lines = [f"{record.get('level', '')} {record.get('event', '')}".strip()]
    for error in record.get("error_detail") or []:
        lines.append(f"  {error.get('exc_type')}: {error.get('exc_value')}")
        for frame in (error.get("frames") or [])[-3:]:
            lines.append(f"    at {frame.get('filename')}:{frame.get('lineno')} {frame.get('name')}")
    return "\n".join(lines)


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def after(timestamp: str, start: str) -> bool:
    """Whether Airflow's ``timestamp`` is at or after ``start``."""
    return _parse_time(timestamp) >= _parse_time(start)
