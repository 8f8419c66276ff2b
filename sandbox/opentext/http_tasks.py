"""HttpTasks as the service executes them: each request sent once, after the step that reached it is stored.

A model's HttpTask (``<serviceTask flowable:type="http">``) is passed by the engine in the same step as the
user task before it; its request leaves afterwards, from a thread of its own, as an asynchronous job of
the real service does, so what it tells (a decision is in) is already readable when it arrives. A failed
request does not hold the process up (as with the task's ``ignoreException``): it is logged and listed
in ``GET /sandbox/http-calls``.

The fields are JUEL over the process variables, plus ``execution`` (the instance's ids) and ``config``:
the tenant configuration the OpenText administrator keeps (``--config FILE``, ``PUT /sandbox/config``),
where credentials such as the Airflow callback's token live. Requests and the list name no header values.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from sandbox.opentext import juel
from sandbox.opentext.engine import HttpCall

log = logging.getLogger(__name__)
DEFAULT_TIMEOUT_MILLISECONDS = 10_000
"""``requestTimeout`` is in milliseconds, as Flowable reads it."""


def _headers(text: str) -> dict[str, str]:
    """``Name: value`` lines, as the HttpTask's ``requestHeaders`` field holds them."""
    pairs = (line.partition(":") for line in text.splitlines() if line.strip())
    return {name.strip(): value.strip() for name, _, value in pairs}


class HttpTaskSender:
    """Sends the HttpTask requests of one tenant's instances and remembers how each went."""

    def __init__(self, configuration: Mapping[str, str] | None = None) -> None:
        self.configuration: dict[str, str] = dict(configuration or {})
        self._sent: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def send_later(
        self, call: HttpCall, execution: dict[str, Any], context: Callable[[], dict[str, Any]]
    ) -> None:
        """Send ``call`` from its own thread; ``context`` gives the process variables once the step that
        reached the task is stored (it waits for the service's lock)."""
        threading.Thread(
            target=self._send, args=(call, execution, context), daemon=True, name=f"http-{call.activity_id}"
        ).start()

    def _send(self, call: HttpCall, execution: dict[str, Any], context: Callable[[], dict[str, Any]]) -> None:
        record: dict[str, Any] = {
            "processInstanceId": execution["processInstanceId"],
            "activityId": call.activity_id,
        }
        try:
            scope = {**context(), "execution": execution, "config": self.configuration}
            evaluated = {name: juel.evaluate(value, scope) for name, value in call.fields.items()}
            fields = {name: "" if value is None else str(value) for name, value in evaluated.items()}
            record.update(method=(fields.get("requestMethod") or "GET").upper(), url=fields["requestUrl"])
            if not record["url"]:
                record["error"] = "requestUrl is empty (is its configuration key set?): not sent"
                log.info("HttpTask %s not sent: %s", call.activity_id, record["error"])
                return self._remember(record)
            response = requests.request(
                record["method"],
                record["url"],
                headers=_headers(fields.get("requestHeaders", "")),
                data=fields.get("requestBody", "").encode(),
                timeout=float(fields.get("requestTimeout") or DEFAULT_TIMEOUT_MILLISECONDS) / 1000,
            )
            record["status"] = response.status_code
            if not response.ok:
                log.warning(
                    "HttpTask %s answered %s: %s", call.activity_id, response.status_code, response.text[:200]
                )
        except Exception as error:  # whatever it was, the call is listed with it and the process goes on
            record["error"] = f"{type(error).__name__}: {error}"
            log.warning(
                "HttpTask %s of %s failed: %s", call.activity_id, execution["processInstanceId"], error
            )
        self._remember(record)

    def _remember(self, record: dict[str, Any]) -> None:
        record["time"] = time.time()
        with self._lock:
            self._sent.append(record)

    def sent(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._sent)
