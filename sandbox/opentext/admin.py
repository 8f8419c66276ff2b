"""Sandbox-only endpoints under ``/sandbox`` (not part of the real API, no token needed): health,
fault injection, traffic counts, the process clock and the tenants' directory (users, passwords, groups)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request

from sandbox.opentext.clock import format_timestamp
from sandbox.opentext.errors import BadRequest
from sandbox.opentext.faults import FaultRule

admin_router = APIRouter(prefix="/sandbox")
JsonObject = Annotated[dict[str, Any], Body()]


@admin_router.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@admin_router.get("/faults")
def list_faults(request: Request) -> dict[str, Any]:
    return {"faults": request.app.state.faults.describe()}


@admin_router.post("/faults")
def set_faults(request: Request, body: Annotated[Any, Body()]) -> dict[str, Any]:
    """Replace the fault rules (one object or a list applied in order); ``revoke_tokens`` revokes
    every token issued so far, on its own or beside a rule."""
    items = body if isinstance(body, list) else [body]
    if not items or not all(isinstance(item, dict) for item in items):
        raise BadRequest("send a fault object or a list of fault objects")
    rule_items = [item for item in items if set(item) - {"revoke_tokens"}]
    rules = [FaultRule.from_json(item, index) for index, item in enumerate(rule_items)]
    if rules:
        request.app.state.faults.replace(rules)
    revoked = request.app.state.tokens.revoke_all() if any(item.get("revoke_tokens") for item in items) else 0
    return {"faults": request.app.state.faults.describe(), "revoked_tokens": revoked}


@admin_router.delete("/faults")
def clear_faults(request: Request) -> dict[str, Any]:
    request.app.state.faults.clear()
    return {"faults": []}


@admin_router.get("/traffic")
def get_traffic(request: Request) -> dict[str, Any]:
    """Per client (``User-Agent``): token requests, other API requests and the connections they used."""
    return {"clients": request.app.state.traffic.describe()}


@admin_router.delete("/traffic")
def clear_traffic(request: Request) -> dict[str, Any]:
    request.app.state.traffic.clear()
    return {"clients": []}


@admin_router.get("/http-calls")
def http_calls(request: Request, tenant: str | None = None) -> dict[str, Any]:
    """The HttpTask requests the tenant's instances sent, oldest first: where, and how each went."""
    return {"calls": request.app.state.services[_tenant(request, tenant)].http.sent()}


@admin_router.put("/config")
def set_configuration(request: Request, body: JsonObject) -> dict[str, Any]:
    """Set keys of the tenant configuration HttpTasks read (every tenant); answers the keys, not values."""
    if not all(isinstance(value, str) for value in body.values()):
        raise BadRequest("configuration values must be strings")
    for service in request.app.state.services.values():
        service.http.configuration.update(body)
    return {"keys": sorted(next(iter(request.app.state.services.values())).http.configuration)}


def _clock_json(request: Request) -> dict[str, Any]:
    clock = next(iter(request.app.state.services.values())).clock
    return {"now": format_timestamp(clock.now()), "offset_seconds": clock.offset_seconds}


@admin_router.get("/clock")
def get_clock(request: Request) -> dict[str, Any]:
    return _clock_json(request)


@admin_router.post("/clock")
def advance_clock(request: Request, body: JsonObject) -> dict[str, Any]:
    """``{"advance_seconds": N}``: process time moves on; timers now due fire before this returns."""
    for service in request.app.state.services.values():
        service.advance_clock(body.get("advance_seconds"))
    return _clock_json(request)


def _tenant(request: Request, tenant: str | None) -> str:
    directory = request.app.state.directory
    if tenant is None:
        return directory.default_tenant
    if tenant not in directory.tenants:
        raise BadRequest(f"tenant '{tenant}' is not served here (known: {', '.join(directory.tenants)})")
    return tenant


@admin_router.get("/users")
def list_users(request: Request, tenant: str | None = None) -> dict[str, Any]:
    return {"users": request.app.state.directory.users(_tenant(request, tenant))}


@admin_router.put("/users/{email}")
def set_user(email: str, request: Request, body: JsonObject) -> dict[str, Any]:
    """``{"groups": [...], "password": "...", "tenant": "..."}``: add or change a user of a tenant's
    directory (default: the first tenant); without a password an existing user keeps theirs."""
    tenant = _tenant(request, body.get("tenant"))
    return request.app.state.directory.set_user(tenant, email, body.get("groups"), body.get("password"))
