"""Fault injection: latency, gateway errors (429 with Retry-After, 5xx) and dropped connections.

Rules are set while the sandbox runs (``POST /sandbox/faults``) and apply, in order, to the real API's
paths (the token endpoint and ``/workflow/v1``), never to ``/sandbox`` or ``/inbox``. Each rule applies
to its next ``times`` matching requests (every request while ``times`` is null), then the next rule
takes over. Rules live in memory: a restart clears them.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import asdict, dataclass, fields
from http import HTTPStatus
from typing import Any

from sandbox.opentext.errors import BadRequest, gateway_fault

_UNAFFECTED_PREFIXES = ("/sandbox", "/inbox")
# Apigee's fault codes for the statuses tests inject most.
_GATEWAY_FAULTS = {
    429: ("Rate limit quota violation. Quota limit exceeded.", "policies.ratelimit.QuotaViolation"),
    502: ("Unexpected EOF at target", "messaging.adaptors.http.flow.UnexpectedEOFAtTarget"),
    503: ("The Service is temporarily unavailable", "messaging.adaptors.http.flow.ServiceUnavailable"),
    504: ("Gateway Timeout", "messaging.adaptors.http.flow.GatewayTimeout"),
}


def real_api_path(path: str) -> bool:
    """The token endpoint and ``/workflow/v1``: what faults apply to, unlike ``/sandbox`` and ``/inbox``."""
    return not path.startswith(_UNAFFECTED_PREFIXES)


@dataclass
class FaultRule:
    """One injected fault; ``latency_ms`` may delay a request that otherwise goes through."""

    latency_ms: int = 0
    status: int | None = None
    retry_after: int | None = None
    drop_connection: bool = False
    times: int | None = None
    path_prefix: str | None = None
    applied: int = 0

    @classmethod
    def from_json(cls, item: Any, index: int) -> FaultRule:
        where = f"faults[{index}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{where} must be an object")
        known = {f.name for f in fields(cls)} - {"applied"}
        unknown = set(item) - known - {"revoke_tokens"}
        if unknown:
            raise BadRequest(f"{where}: unknown fields {sorted(unknown)}; known fields are {sorted(known)}")
        rule = cls(**{key: value for key, value in item.items() if key in known})
        for name in ("latency_ms", "status", "retry_after", "times"):
            value = getattr(rule, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise BadRequest(f"{where}: {name} must be a non-negative whole number, got {value!r}")
        if rule.status is not None and not 400 <= rule.status <= 599:
            raise BadRequest(f"{where}: status must be an HTTP error status (400-599), got {rule.status}")
        if not (rule.status or rule.drop_connection or rule.latency_ms):
            raise BadRequest(f"{where}: give at least one of status, drop_connection or latency_ms")
        return rule

    def matches(self, path: str) -> bool:
        return (self.times is None or self.applied < self.times) and path.startswith(self.path_prefix or "/")

    def error_response(self):
        status = HTTPStatus(self.status)
        faultstring, errorcode = _GATEWAY_FAULTS.get(
            status.value, (status.phrase, f"messaging.runtime.{status.phrase.replace(' ', '')}")
        )
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else None
        return gateway_fault(status.value, faultstring, errorcode, headers)


class FaultInjector:
    """The active fault rules, shared by the middleware and the admin endpoints."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def replace(self, rules: list[FaultRule]) -> None:
        with self._lock:
            self._rules = rules

    def clear(self) -> None:
        self.replace([])

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(rule) for rule in self._rules]

    def take(self, path: str) -> FaultRule | None:
        """The rule for this request, counted as applied; None lets the request through untouched."""
        if not real_api_path(path):
            return None
        with self._lock:
            for rule in self._rules:
                if rule.matches(path):
                    rule.applied += 1
                    return rule
        return None


async def _drop_connection(send) -> None:
    """Close the TCP connection without a response, as a crashed gateway does.

    uvicorn hands the application its request cycle's bound ``send``; the cycle owns the transport.
    """
    transport = send.__self__.transport
    transport.abort()
    await asyncio.sleep(0.05)  # let uvicorn notice the disconnect before the app returns


class FaultMiddleware:
    """Outermost ASGI layer, so a dropped connection closes the real socket."""

    def __init__(self, app, injector: FaultInjector):
        self.app = app
        self.injector = injector

    async def __call__(self, scope, receive, send):
        rule = self.injector.take(scope["path"]) if scope["type"] == "http" else None
        if rule is None:
            await self.app(scope, receive, send)
            return
        if rule.latency_ms:
            await asyncio.sleep(rule.latency_ms / 1000)
        if rule.drop_connection:
            await _drop_connection(send)
        elif rule.status:
            await rule.error_response()(scope, receive, send)
        else:
            await self.app(scope, receive, send)
