"""Reviewer commands over the HTTP API, for scripts and the demo:

    python -m sandbox.opentext tasks    --url URL [--group G] [--user EMAIL] [--json]
    python -m sandbox.opentext claim    --url URL --user EMAIL TASK_ID
    python -m sandbox.opentext complete --url URL --user EMAIL [--outcome approved] [--comment "..."] TASK_ID

``--url`` is the service root (``http://127.0.0.1:8091``). With ``--user`` the commands sign in as that
person (OAuth password grant with ``--password``, default ``$OPENTEXT_PASSWORD`` or ``sandbox``, the
password of the shipped directory's people), so the service checks what they may do; without it they
act as the client (``--client ID:SECRET``, default ``sandbox:sandbox``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import requests

COMMANDS = ("tasks", "claim", "complete")
TIMEOUT_SECONDS = 30


class CommandFailed(Exception):
    pass


class ReviewerClient:
    def __init__(self, url: str, client: str, tenant: str, user: str | None, password: str):
        self.api = url.rstrip("/") + "/workflow/v1"
        client_id, _, secret = client.partition(":")
        grant = {"grant_type": "client_credentials"}
        if user:
            grant = {"grant_type": "password", "username": user, "password": password}
        response = requests.post(
            f"{url.rstrip('/')}/tenants/{tenant}/oauth2/token",
            json={**grant, "client_id": client_id, "client_secret": secret},
            timeout=TIMEOUT_SECONDS,
        )
        self._check(response, f"sign in as {user or client_id}")
        self.headers = {"Authorization": f"Bearer {response.json()['access_token']}"}

    @staticmethod
    def _check(response: requests.Response, doing: str) -> None:
        if response.ok:
            return
        try:
            body = response.json()
            detail = (
                body.get("exception")
                or body.get("error_description")
                or body.get("fault", {}).get("faultstring")
                or body
            )
        except ValueError:
            detail = response.text
        raise CommandFailed(f"could not {doing}: HTTP {response.status_code}: {detail}")

    def call(self, method: str, path: str, doing: str, **kwargs: Any) -> requests.Response:
        response = requests.request(
            method, self.api + path, headers=self.headers, timeout=TIMEOUT_SECONDS, **kwargs
        )
        self._check(response, doing)
        return response


def _tasks(client: ReviewerClient, options: argparse.Namespace) -> None:
    params: dict[str, Any] = {"sort": "createTime", "order": "desc", "count": 100}
    if options.group:
        params["candidateGroup"] = options.group
    if options.user:
        params["candidateOrAssigned"] = options.user
    body = client.call("GET", "/tasks", "list tasks", params=params).json()
    tasks = body.get("_embedded", {}).get("tasks", [])
    if options.json:
        print(json.dumps(tasks, indent=2))
        return
    for task in tasks:
        groups = ",".join(task.get("candidateGroups") or [])
        print(
            f"{task['id']}\t{task['taskDefinitionKey']}\t{task['name']}\t{task['assignee'] or '-'}\t{groups}"
        )


def _claim(client: ReviewerClient, options: argparse.Namespace) -> None:
    client.call(
        "POST", f"/tasks/{options.task_id}", "claim", json={"action": "claim", "assignee": options.user}
    )
    print(f"claimed {options.task_id} for {options.user}")


def _complete(client: ReviewerClient, options: argparse.Namespace) -> None:
    task = client.call("GET", f"/tasks/{options.task_id}", "read the task").json()
    if options.comment:
        client.call(
            "POST",
            f"/process-instances/{task['processInstanceId']}/comments",
            "add the comment",
            json={"message": options.comment, "taskId": options.task_id},
        )
    body: dict[str, Any] = {"action": "complete"}
    if options.outcome:
        body["outcome"] = options.outcome
    client.call("POST", f"/tasks/{options.task_id}", "complete", json=body)
    print(f"completed {options.task_id}" + (f" with outcome {options.outcome}" if options.outcome else ""))


def parser() -> argparse.ArgumentParser:
    arguments = argparse.ArgumentParser(
        prog="python -m sandbox.opentext",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = arguments.add_subparsers(dest="command", required=True)
    for name, handler in (("tasks", _tasks), ("claim", _claim), ("complete", _complete)):
        command = commands.add_parser(name)
        command.set_defaults(handler=handler)
        command.add_argument("--url", required=True, help="service root, e.g. http://127.0.0.1:8091")
        command.add_argument("--client", default="sandbox:sandbox", metavar="ID:SECRET")
        command.add_argument("--tenant", default="sandbox")
        command.add_argument("--user", required=name != "tasks", metavar="EMAIL")
        command.add_argument("--password", default=os.environ.get("OPENTEXT_PASSWORD", "sandbox"))
        if name == "tasks":
            command.add_argument("--group")
            command.add_argument("--json", action="store_true", help="print the tasks as JSON")
        else:
            command.add_argument("task_id", metavar="TASK_ID")
        if name == "complete":
            command.add_argument("--outcome")
            command.add_argument("--comment")
    return arguments


def main(argv: list[str]) -> int:
    options = parser().parse_args(argv)
    try:
        client = ReviewerClient(options.url, options.client, options.tenant, options.user, options.password)
        options.handler(client, options)
    except (CommandFailed, requests.RequestException) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
