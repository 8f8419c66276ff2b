"""Connections and direct SQL for tests of the Prodigy hook, operators, sensor and trigger.

The hook reaches the sandbox's database through an Airflow connection given as ``AIRFLOW_CONN_<ID>`` JSON,
built from the ``prodigy.json`` the sandbox's home fixture wrote, the way a team pastes its own settings.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from prodigy_opentext.triggers.prodigy import ProdigyBatchTrigger
from tests.fixtures.samples import SAMPLES_DIR

SAMPLE_NAMES = ("ner_fashion_brands", "textcat_docs_issues", "ner_manual_food")


def prodigy_config(home: Path) -> dict[str, Any]:
    return json.loads((home / "prodigy.json").read_text(encoding="utf-8"))


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, connection: dict[str, Any]) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))


@pytest.fixture
def prodigy_conn(prodigy_home_any: Path, monkeypatch: pytest.MonkeyPatch, prodigy_samples_dir: Path) -> Path:
    """``prodigy_default`` pointing at the sandbox's database (SQLite in one run, PostgreSQL in another)."""
    set_connection(
        monkeypatch, "prodigy_default", {"conn_type": "prodigy", "extra": prodigy_config(prodigy_home_any)}
    )
    return prodigy_home_any


@pytest.fixture
def prodigy_sqlite_conn(
    prodigy_home: Path, monkeypatch: pytest.MonkeyPatch, prodigy_samples_dir: Path
) -> Path:
    """``prodigy_default`` pointing at the sandbox's SQLite database."""
    set_connection(
        monkeypatch, "prodigy_default", {"conn_type": "prodigy", "extra": prodigy_config(prodigy_home)}
    )
    return prodigy_home


def sample_rows(name: str, limit: int | None = None) -> list[dict[str, Any]]:
    with (SAMPLES_DIR / f"{name}.jsonl").open("rb") as lines:
        return [json.loads(line) for number, line in enumerate(lines) if limit is None or number < limit]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open("rb") as lines:
        return [json.loads(line) for line in lines]


def execute_sql(home: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run SQL straight against the sandbox's database (``?`` placeholders), as damage would come about."""
    config = prodigy_config(home)
    if config["db"] == "sqlite":
        import sqlite3

        settings = config["db_settings"]["sqlite"]
        with sqlite3.connect(Path(settings["path"]) / settings["name"]) as db:
            return db.execute(sql, params).fetchall()
    import psycopg2

    db = psycopg2.connect(**config["db_settings"]["postgresql"])
    try:
        with db, db.cursor() as cursor:
            cursor.execute(sql.replace("?", "%s"), params)
            return cursor.fetchall() if cursor.description else []
    finally:
        db.close()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A local port nothing listens on (bound and released), for unreachable-database tests."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    yield port


WAIT_TIMEOUT = 180


@pytest.fixture
def deferred(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set once the batch sensor's trigger starts polling, i.e. after the sensor deferred."""
    started = threading.Event()
    run = ProdigyBatchTrigger.run

    async def run_and_signal(self: ProdigyBatchTrigger):
        started.set()
        async for event in run(self):
            yield event

    monkeypatch.setattr(ProdigyBatchTrigger, "run", run_and_signal)
    return started
