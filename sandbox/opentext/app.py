"""Assembles the sandbox: FastAPI routes, error shapes, the background timer loop and fault injection."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandbox.opentext.admin import admin_router
from sandbox.opentext.api import API_PREFIX, router
from sandbox.opentext.auth import AuthenticationFailed, TokenIssuer, token_router
from sandbox.opentext.clock import SandboxClock
from sandbox.opentext.directory import DEFAULT_DIRECTORY, Directory
from sandbox.opentext.errors import BadRequest, NotFound, ServiceError, gateway_fault
from sandbox.opentext.faults import FaultInjector, FaultMiddleware
from sandbox.opentext.http_tasks import HttpTaskSender
from sandbox.opentext.inbox import SignInNeeded, inbox_router, sign_in_redirect
from sandbox.opentext.service import WorkflowService
from sandbox.opentext.storage import Store
from sandbox.opentext.traffic import TrafficCounter, TrafficMiddleware

log = logging.getLogger(__name__)


@dataclass
class Settings:
    db_path: str
    directory_path: str = str(DEFAULT_DIRECTORY)
    clients: dict[str, str] = field(default_factory=dict)
    """Clients added to every tenant of the directory (``--client``)."""
    token_lifetime_seconds: int = 3600
    timer_interval_seconds: float = 1.0
    configuration: dict[str, str] = field(default_factory=dict)
    """The tenant configuration HttpTasks read as ``${config.KEY}`` (``--config``), for every tenant."""


def tenant_db_path(db_path: str, tenant_id: str) -> str:
    """Each tenant's data in a file named after it, beside ``db_path`` (which keeps tokens and people):
    whatever order the directory lists tenants in, a tenant always reads its own file."""
    path = Path(db_path)
    return str(path.with_name(f"{path.stem}.{tenant_id}{path.suffix}"))


def _run_timer_loop(services: list[WorkflowService], stop: threading.Event, interval: float) -> None:
    """Fire due timers every ``interval`` seconds, like the job executor of the real service."""
    while not stop.wait(interval):
        for service in services:
            try:
                service.fire_due_timers()
            except Exception:  # the loop must outlive one failing instance; the log says which
                log.exception("firing due timers of tenant %s failed", service.tenant_id)


def _validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
    problems = "; ".join(
        f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}" for problem in error.errors()
    )
    return BadRequest(problems).response()


def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    path = request.url.path
    if error.status_code == 404 and not path.startswith((API_PREFIX, "/sandbox", "/inbox")):
        return gateway_fault(
            404,
            f"Unable to identify proxy for host: {request.url.hostname} and url: {path}",
            "messaging.adaptors.http.flow.ApplicationNotFound",
        )
    if error.status_code == 404:
        return NotFound(f"No handler found for {request.method} {path}").response()
    return JSONResponse(
        {"message": str(error.detail), "exception": f"{request.method} {path}: {error.detail}"},
        status_code=error.status_code,
    )


def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    log.exception("unexpected error in %s %s", request.method, request.url.path)
    return JSONResponse(
        {"message": "Internal server error", "exception": f"{type(error).__name__}: {error}"}, status_code=500
    )


def create_app(settings: Settings) -> TrafficMiddleware:
    """The ASGI application: FastAPI wrapped in the fault-injection layer, counted from outside it."""
    home = Store(settings.db_path)
    directory = Directory.load(home, Path(settings.directory_path), settings.clients)
    services: dict[str, WorkflowService] = {}
    for tenant_id in directory.tenants:
        store = Store(tenant_db_path(settings.db_path, tenant_id))
        services[tenant_id] = WorkflowService(
            store, SandboxClock(store), directory, tenant_id, HttpTaskSender(settings.configuration)
        )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        loop = threading.Thread(
            target=_run_timer_loop,
            args=(list(services.values()), stop, settings.timer_interval_seconds),
            daemon=True,
        )
        loop.start()
        try:
            yield
        finally:
            stop.set()
            loop.join(timeout=10)

    app = FastAPI(
        title="OpenText Workflow Service sandbox",
        lifespan=lifespan,
        docs_url="/sandbox/docs",
        openapi_url="/sandbox/openapi.json",
        redoc_url=None,
    )
    app.state.services = services
    app.state.directory = directory
    app.state.tokens = TokenIssuer(home, directory, settings.token_lifetime_seconds)
    app.state.faults = FaultInjector()
    app.state.traffic = TrafficCounter()
    app.add_exception_handler(ServiceError, lambda _, error: error.response())
    app.add_exception_handler(AuthenticationFailed, lambda _, error: error.response())
    app.add_exception_handler(SignInNeeded, sign_in_redirect)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    for part in (token_router, router, admin_router, inbox_router):
        app.include_router(part)
    return TrafficMiddleware(FaultMiddleware(app, app.state.faults), app.state.traffic)
