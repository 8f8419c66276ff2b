"""Traffic counts: the calls each client made to the real API's paths, and over how many connections.

A gateway's view of its clients, for measuring them from the server's side: per ``User-Agent``, the
token requests, the other API requests and the distinct TCP connections (client address and port) they
came on. Counted before fault injection, so a dropped or refused request counts too. Counts live in memory.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sandbox.opentext.faults import real_api_path


@dataclass
class ClientTraffic:
    token_requests: int = 0
    api_requests: int = 0
    connections: set[tuple[str, int]] = field(default_factory=set)


class TrafficCounter:
    def __init__(self) -> None:
        self._clients: defaultdict[str, ClientTraffic] = defaultdict(ClientTraffic)
        self._lock = threading.Lock()

    def count(self, scope: dict[str, Any]) -> None:
        path = scope["path"]
        if not real_api_path(path):
            return
        headers = dict(scope.get("headers") or [])
        user_agent = headers.get(b"user-agent", b"").decode("latin-1")
        with self._lock:
            client = self._clients[user_agent]
            if path.endswith("/oauth2/token"):
                client.token_requests += 1
            else:
                client.api_requests += 1
            if scope.get("client"):
                client.connections.add(tuple(scope["client"]))

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "user_agent": user_agent,
                    "token_requests": client.token_requests,
                    "api_requests": client.api_requests,
                    "connections": len(client.connections),
                }
                for user_agent, client in self._clients.items()
            ]

    def clear(self) -> None:
        with self._lock:
            self._clients.clear()


class TrafficMiddleware:
    """Outermost ASGI layer: every request is counted, whatever the layers inside do with it."""

    def __init__(self, app, counter: TrafficCounter):
        self.app = app
        self.counter = counter

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            self.counter.count(scope)
        await self.app(scope, receive, send)
