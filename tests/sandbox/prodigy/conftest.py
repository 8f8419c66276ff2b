"""Reading the sandbox's database with plain SQL drivers, independently of the sandbox's own peewee models."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Query = Callable[[str], list[tuple[Any, ...]]]


def _plain(value: Any) -> Any:
    """psycopg2 returns BYTEA as memoryview; compare it as bytes like SQLite's BLOB."""
    return value.tobytes() if isinstance(value, memoryview) else value


@pytest.fixture
def raw_sql() -> Query:
    """``raw_sql(sql)`` runs one query on the database the current PRODIGY_HOME's prodigy.json names."""

    def query(sql: str) -> list[tuple[Any, ...]]:
        config = json.loads((Path(os.environ["PRODIGY_HOME"]) / "prodigy.json").read_text())
        settings = config["db_settings"][config["db"]]
        if config["db"] == "sqlite":
            connection = sqlite3.connect(Path(settings["path"]) / settings["name"])
        else:
            import psycopg2

            connection = psycopg2.connect(**settings)
        try:
            cursor = connection.cursor()
            cursor.execute(sql)
            return [tuple(_plain(value) for value in row) for row in cursor.fetchall()]
        finally:
            connection.close()

    return query
