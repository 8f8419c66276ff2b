"""What the sensor tests share: the OpenText sandbox as the DAG runs' connection, and a signal that the
deferred wait has looked once and found no decision."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from prodigy_opentext.hooks.opentext_async import OpenTextWorkflowAsyncHook
from tests.hooks.test_opentext_contract import connection_json


@pytest.fixture
def opentext(opentext_sandbox_session: Any, airflow_db: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The shared sandbox as the ``opentext_default`` connection of DAG runs in this process."""
    monkeypatch.setenv("AIRFLOW_CONN_OPENTEXT_DEFAULT", connection_json(opentext_sandbox_session))
    return opentext_sandbox_session


@pytest.fixture
def deferred(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set once the deferred sensor's trigger has read OpenText and found no decision yet."""
    waiting = threading.Event()
    read_decision = OpenTextWorkflowAsyncHook.read_decision

    async def read_and_signal(self: OpenTextWorkflowAsyncHook, *args: Any) -> dict[str, Any] | None:
        decision = await read_decision(self, *args)
        if decision is None:
            waiting.set()
        return decision

    monkeypatch.setattr(OpenTextWorkflowAsyncHook, "read_decision", read_and_signal)
    return waiting
