"""Prodigy's annotation server API, serving one dataset's task stream to named sessions.

Endpoints as Prodigy's web app calls them: ``GET /project``, ``GET /get_questions`` (the unnamed session),
``POST /get_session_questions {session_id}`` -> ``{tasks, total, progress, session_id}``,
``POST /give_answers {answers, session_id}`` -> ``{progress}`` and ``POST /end_session {session_id}``.
A named session's id is ``<dataset>-<name>`` (the page is opened as ``/?session=<name>``).

Routing: with ``feed_overlap`` every session gets every task; without it each task goes to one session;
``annotations_per_task`` = N hands each task to N sessions. What a session already answered is read back from
the database at start, so a restarted server does not ask again. ``PRODIGY_ALLOWED_SESSIONS`` restricts the
session names and ``PRODIGY_BASIC_AUTH_USER``/``PRODIGY_BASIC_AUTH_PASS`` put every route behind basic auth.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import html
import os
import secrets
import socket
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel

from sandbox.prodigy.config import load_config
from sandbox.prodigy.db import Database, check_dataset_name, connect
from sandbox.prodigy.errors import ProdigyError
from sandbox.prodigy.tasks import ANSWERS, INPUT_KEYS, TASK_HASH, read_jsonl, set_hashes

DEFAULT_BATCH_SIZE = 10


def load_stream(source: Path | str) -> list[dict[str, Any]]:
    """The source tasks with hashes set, duplicates (same task hash) dropped as Prodigy's stream does."""
    tasks: dict[int, dict[str, Any]] = {}
    for number, task in read_jsonl(source):
        if not any(key in task for key in INPUT_KEYS):
            raise ProdigyError(f"{source}, line {number}: no input key (one of {', '.join(INPUT_KEYS)})")
        set_hashes(task)
        tasks.setdefault(task[TASK_HASH], task)
    return list(tasks.values())


def infer_view_id(tasks: list[dict[str, Any]]) -> str:
    """The annotation interface the first task calls for, unless it names one in ``_view_id``."""
    first = tasks[0] if tasks else {}
    if "_view_id" in first:
        return first["_view_id"]
    if "options" in first:
        return "choice"
    if "spans" in first:
        return "ner" if "label" in first or len(first["spans"]) == 1 else "ner_manual"
    if "label" in first:
        return "classification"
    return next((key for key in ("html", "image") if key in first), "text")


def stream_labels(tasks: list[dict[str, Any]]) -> list[str]:
    """Every label the stream uses, on tasks and on spans."""
    labels = {task["label"] for task in tasks if isinstance(task.get("label"), str)}
    labels.update(span["label"] for task in tasks for span in task.get("spans") or [] if "label" in span)
    return sorted(labels)


@dataclass
class TaskRouter:
    """Decides which tasks a session gets next, from who answered or holds each task.

    ``cap`` is how many sessions get each task (None: every session, i.e. ``feed_overlap``).
    ``route_by_meta``: a task whose ``meta`` names a session under this key goes to that session only
    (``<dataset>-<name>``), as a recipe's custom ``task_router`` routes rework to its annotator.
    """

    tasks: list[dict[str, Any]]
    cap: int | None
    batch_size: int = DEFAULT_BATCH_SIZE
    route_by_meta: str | None = None
    dataset: str = ""
    answered: defaultdict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    held: defaultdict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    answered_count: Counter[str] = field(default_factory=Counter)
    complete: int = 0

    def __post_init__(self) -> None:
        self._in_stream = {task[TASK_HASH] for task in self.tasks}

    def next_batch(self, session_id: str) -> list[dict[str, Any]]:
        """Up to ``batch_size`` tasks this session has neither answered nor holds, within the cap."""
        batch = []
        for task in self.tasks:
            key = task[TASK_HASH]
            answered, held = self.answered.get(key, ()), self.held.get(key, ())
            if session_id in answered or session_id in held or not self._routed_to(task, session_id):
                continue
            if self.cap is not None and len(answered) + len(held) >= self.cap:
                continue
            self.held[key].add(session_id)
            batch.append(task)
            if len(batch) == self.batch_size:
                break
        return batch

    def _routed_to(self, task: dict[str, Any], session_id: str) -> bool:
        meta = task.get("meta") if self.route_by_meta else None
        name = meta.get(self.route_by_meta) if isinstance(meta, dict) and self.route_by_meta else None
        return name is None or session_id == f"{self.dataset}-{name}"

    def record(self, session_id: str, task_hash: int) -> None:
        """A session answered a task: it no longer holds it, and the answer counts towards the cap."""
        self.held[task_hash].discard(session_id)
        if task_hash not in self._in_stream or session_id in self.answered[task_hash]:
            return
        self.answered[task_hash].add(session_id)
        self.answered_count[session_id] += 1
        if self.cap is not None and len(self.answered[task_hash]) == self.cap:
            self.complete += 1

    def release(self, session_id: str) -> int:
        """Give back the tasks a session holds unanswered (its browser tab closed); returns how many."""
        released = 0
        for sessions in self.held.values():
            if session_id in sessions:
                sessions.discard(session_id)
                released += 1
        return released

    def progress(self, session_id: str) -> float:
        """Share of the stream done: the session's own share (feed_overlap), else tasks fully annotated."""
        if not self.tasks:
            return 1.0
        done = self.answered_count[session_id] if self.cap is None else self.complete
        return round(done / len(self.tasks), 4)


class SessionRequest(BaseModel):
    session_id: str | None = None


class AnswersRequest(BaseModel):
    answers: list[dict[str, Any]]
    session_id: str | None = None


@dataclass
class Feed:
    """One running annotation project: its dataset, task stream, routing and access rules."""

    db: Database
    dataset: str
    router: TaskRouter
    view_id: str
    labels: list[str]
    feed_overlap: bool
    annotations_per_task: int | None
    allowed_sessions: list[str] | None
    default_session: str = field(default_factory=lambda: time.strftime("%Y-%m-%d_%H-%M-%S"))
    total: int = 0

    def __post_init__(self) -> None:
        self.db.add_dataset(self.dataset)
        for answer in self.db.get_dataset_examples(self.dataset):
            self.total += 1
            if "_session_id" in answer and TASK_HASH in answer:
                self.router.record(answer["_session_id"], answer[TASK_HASH])

    def session(self, session_id: str | None) -> str:
        """The session id a request acts for, after checking its form and PRODIGY_ALLOWED_SESSIONS."""
        if session_id is None or session_id == self.default_session:
            if self.allowed_sessions is not None:
                raise HTTPException(
                    403, "only named sessions may annotate here: open the app as /?session=<name>"
                )
            return self.default_session
        prefix = f"{self.dataset}-"
        if not session_id.startswith(prefix) or session_id == prefix:
            example = f"{prefix}alice"
            raise HTTPException(400, f"session_id {session_id!r} must be '{prefix}<name>', e.g. {example!r}")
        try:
            check_dataset_name(session_id)
        except ProdigyError as err:
            raise HTTPException(400, f"session_id {session_id!r}: {err}") from None
        name = session_id.removeprefix(prefix)
        if self.allowed_sessions is not None and name not in self.allowed_sessions:
            allowed = ", ".join(self.allowed_sessions)
            raise HTTPException(403, f"session {name!r} is not allowed (PRODIGY_ALLOWED_SESSIONS: {allowed})")
        return session_id

    def project(self) -> dict[str, Any]:
        config = {
            "dataset": self.dataset,
            "view_id": self.view_id,
            "labels": self.labels,
            "feed_overlap": self.feed_overlap,
            "annotations_per_task": self.annotations_per_task,
            "batch_size": self.router.batch_size,
            "total_tasks": len(self.router.tasks),
        }
        recipe = "sandbox.serve"
        return {"dataset": self.dataset, "view_id": self.view_id, "recipe_name": recipe, "config": config}

    def questions(self, session_id: str) -> dict[str, Any]:
        tasks = self.router.next_batch(session_id)
        progress = self.router.progress(session_id)
        return {"tasks": tasks, "total": self.total, "progress": progress, "session_id": session_id}

    def give_answers(self, session_id: str, answers: list[dict[str, Any]]) -> dict[str, Any]:
        now = int(time.time())
        stored = []
        for index, answer in enumerate(answers):
            if answer.get("answer") not in ANSWERS:
                given, allowed = answer.get("answer"), ", ".join(ANSWERS)
                raise HTTPException(400, f"answers[{index}]: 'answer' is {given!r}, not one of {allowed}")
            task = set_hashes(dict(answer))
            task.update(_session_id=session_id, _annotator_id=session_id)
            task.setdefault("_view_id", self.view_id)
            task.setdefault("_timestamp", now)
            stored.append(task)
        if stored:
            self.db.add_dataset(session_id, session=True)
            self.db.add_examples(stored, datasets=[self.dataset, session_id])
        for task in stored:
            self.router.record(session_id, task[TASK_HASH])
        self.total += len(stored)
        return {"progress": self.router.progress(session_id)}


def _basic_auth_credentials() -> tuple[str, str] | None:
    user = os.environ.get("PRODIGY_BASIC_AUTH_USER")
    password = os.environ.get("PRODIGY_BASIC_AUTH_PASS")
    if bool(user) != bool(password):
        raise ProdigyError("set both PRODIGY_BASIC_AUTH_USER and PRODIGY_BASIC_AUTH_PASS, or neither")
    return (user, password) if user else None


def _authorized(header: str | None, credentials: tuple[str, str]) -> bool:
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    expected_user, expected_password = (value.encode("utf-8") for value in credentials)
    same_user = secrets.compare_digest(user.encode("utf-8"), expected_user)
    return secrets.compare_digest(password.encode("utf-8"), expected_password) and same_user


def _page(feed: Feed, session: str | None) -> str:
    """The page a person opens: which dataset and session it annotates (the API is what clients use)."""
    session_id = feed.session(f"{feed.dataset}-{session}" if session else None)
    return (
        f"<!doctype html><title>Prodigy sandbox: {html.escape(feed.dataset)}</title>"
        f"<h1>Dataset {html.escape(feed.dataset)}</h1><p>Session <code>{html.escape(session_id)}</code>, "
        f"interface <code>{html.escape(feed.view_id)}</code>, {len(feed.router.tasks)} tasks, "
        f"progress {feed.router.progress(session_id):.0%}.</p>"
    )


def create_app(feed: Feed, credentials: tuple[str, str] | None = None) -> FastAPI:
    """The HTTP app; handlers are ``async`` so that requests are handled one at a time, in order."""
    app = FastAPI(title="Prodigy sandbox", docs_url=None, redoc_url=None, openapi_url=None)

    if credentials is not None:

        @app.middleware("http")
        async def basic_auth(request: Request, call_next: Any) -> Any:
            if not _authorized(request.headers.get("authorization"), credentials):
                headers = {"WWW-Authenticate": 'Basic realm="Prodigy"'}
                return JSONResponse({"detail": "basic auth required"}, status_code=401, headers=headers)
            return await call_next(request)

    @app.get("/", response_class=HTMLResponse)
    async def page(session: str | None = None) -> str:
        return _page(feed, session)

    @app.get("/project")
    async def project() -> dict[str, Any]:
        return feed.project()

    @app.get("/get_questions")
    async def get_questions() -> dict[str, Any]:
        return feed.questions(feed.session(None))

    @app.post("/get_session_questions")
    async def get_session_questions(body: SessionRequest) -> dict[str, Any]:
        return feed.questions(feed.session(body.session_id))

    @app.post("/give_answers")
    async def give_answers(body: AnswersRequest) -> dict[str, Any]:
        return feed.give_answers(feed.session(body.session_id), body.answers)

    @app.post("/end_session")
    async def end_session(body: SessionRequest) -> dict[str, Any]:
        session_id = feed.session(body.session_id)
        return {"session_id": session_id, "released": feed.router.release(session_id)}

    return app


async def _serve_announcing(server: Any, sock: socket.socket, ready_line: str) -> None:
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.05)
    if server.started:
        print(ready_line, flush=True)
    await serving


def serve(
    dataset: str,
    source: Path | str,
    host: str | None = None,
    port: int | None = None,
    feed_overlap: bool | None = None,
    annotations_per_task: int | None = None,
    view_id: str | None = None,
    route_by_meta: str | None = None,
) -> None:
    """Run the server until SIGINT/SIGTERM. Unset options come from prodigy.json (as Prodigy reads them).

    ``port=0`` binds a free port; the ready line printed on start names the real URL.
    """
    import uvicorn

    check_dataset_name(dataset)
    config = load_config()
    host = host or config.get("host") or "127.0.0.1"
    port = config.get("port", 8092) if port is None else port
    feed_overlap = bool(config.get("feed_overlap", False)) if feed_overlap is None else feed_overlap
    if annotations_per_task is None:
        annotations_per_task = config.get("annotations_per_task")
    if annotations_per_task is not None and int(annotations_per_task) < 1:
        raise ProdigyError(f"annotations_per_task must be at least 1, not {annotations_per_task}")
    allowed = os.environ.get("PRODIGY_ALLOWED_SESSIONS")
    credentials = _basic_auth_credentials()
    tasks = load_stream(source)
    cap = int(annotations_per_task) if annotations_per_task is not None else (None if feed_overlap else 1)
    batch_size = int(config.get("batch_size", DEFAULT_BATCH_SIZE))
    router = TaskRouter(tasks, cap, batch_size, route_by_meta=route_by_meta, dataset=dataset)
    feed = Feed(
        db=connect(config),
        dataset=dataset,
        router=router,
        view_id=view_id or infer_view_id(tasks),
        labels=stream_labels(tasks),
        feed_overlap=feed_overlap,
        annotations_per_task=annotations_per_task,
        allowed_sessions=[name.strip() for name in allowed.split(",") if name.strip()] if allowed else None,
    )
    # The protocol must be IPPROTO_TCP (not 0) for asyncio to set TCP_NODELAY on accepted connections;
    # without it every keep-alive response waits ~40 ms for a delayed ACK.
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        raise ProdigyError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    bound_port = sock.getsockname()[1]
    url_host = f"[{host}]" if family == socket.AF_INET6 else host
    ready = (
        f"Prodigy sandbox ready at http://{url_host}:{bound_port} "
        f"(dataset '{dataset}', {len(tasks)} tasks, view_id {feed.view_id}, feed_overlap {feed_overlap})"
    )
    app = create_app(feed, credentials)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    try:
        asyncio.run(_serve_announcing(server, sock, ready))
    finally:
        feed.db.close()
