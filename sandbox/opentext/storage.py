"""SQLite persistence for the sandbox: models, instances (with their serialized engine state), tasks,
variables, comments, attachments, tokens, the directory's users and settings.

Runtime and history share tables: a row whose ``end_time`` is NULL is running, any row is history, so
a finished instance or task stays readable in history after it leaves the runtime lists. Each thread
gets its own connection (WAL mode lets readers run beside the one writer).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    key TEXT NOT NULL,
    name TEXT,
    version INTEGER NOT NULL,
    process_definition_id TEXT NOT NULL UNIQUE,
    deployment_id TEXT NOT NULL,
    model_type TEXT NOT NULL,
    content TEXT NOT NULL,
    start_messages TEXT NOT NULL,
    has_none_start INTEGER NOT NULL,
    tenant_id TEXT,
    created REAL NOT NULL,
    UNIQUE (key, version)
);
CREATE TABLE IF NOT EXISTS process_instances (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    process_definition_id TEXT NOT NULL,
    process_definition_key TEXT NOT NULL,
    process_definition_version INTEGER NOT NULL,
    process_definition_name TEXT,
    name TEXT,
    business_key TEXT,
    tenant_id TEXT,
    start_user_id TEXT,
    start_activity_id TEXT,
    start_time REAL NOT NULL,
    end_time REAL,
    end_activity_id TEXT,
    delete_reason TEXT,
    suspended INTEGER NOT NULL DEFAULT 0,
    activity_id TEXT,
    next_timer_due REAL,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS process_instances_business_key ON process_instances (business_key);
CREATE INDEX IF NOT EXISTS process_instances_timers ON process_instances (next_timer_due)
    WHERE end_time IS NULL;
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    process_instance_id TEXT NOT NULL REFERENCES process_instances (id),
    process_definition_id TEXT NOT NULL,
    process_definition_key TEXT NOT NULL,
    business_key TEXT,
    task_definition_key TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    assignee TEXT,
    owner TEXT,
    delegation_state TEXT,
    candidate_groups TEXT NOT NULL,
    candidate_users TEXT NOT NULL,
    outcomes TEXT NOT NULL,
    form_key TEXT,
    category TEXT,
    priority INTEGER NOT NULL,
    due_date REAL,
    tenant_id TEXT,
    create_time REAL NOT NULL,
    claim_time REAL,
    end_time REAL,
    delete_reason TEXT,
    outcome TEXT,
    local_variables TEXT NOT NULL DEFAULT '{}',
    initiator_can_complete INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS tasks_process_instance ON tasks (process_instance_id);
CREATE TABLE IF NOT EXISTS variables (
    process_instance_id TEXT NOT NULL REFERENCES process_instances (id),
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (process_instance_id, name)
);
CREATE TABLE IF NOT EXISTS comments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    process_instance_id TEXT NOT NULL REFERENCES process_instances (id),
    task_id TEXT,
    author TEXT,
    message TEXT NOT NULL,
    time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS attachments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    process_instance_id TEXT NOT NULL REFERENCES process_instances (id),
    task_id TEXT,
    name TEXT NOT NULL,
    description TEXT,
    type TEXT NOT NULL,
    user_id TEXT,
    size INTEGER NOT NULL,
    content BLOB NOT NULL,
    time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    token TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    issued_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS directory_users (
    tenant_id TEXT NOT NULL,
    email TEXT NOT NULL,
    password_sha256 TEXT,
    groups TEXT NOT NULL,
    PRIMARY KEY (tenant_id, email)
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

# Columns holding JSON: encoded on write, decoded on read.
JSON_COLUMNS = frozenset(
    {
        "candidate_groups",
        "candidate_users",
        "outcomes",
        "local_variables",
        "start_messages",
        "value",
        "groups",
    }
)


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    return {key: json.loads(row[key]) if key in JSON_COLUMNS else row[key] for key in row.keys()}  # noqa: SIM118


def _encode(values: dict[str, Any]) -> dict[str, Any]:
    return {key: json.dumps(value) if key in JSON_COLUMNS else value for key, value in values.items()}


class Store:
    """Thin data access over one SQLite file; callers serialize writes (see `WorkflowService`)."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._local = threading.local()
        self._connection().executescript(SCHEMA)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Bring a file written by an older sandbox up to the schema (columns added since)."""
        columns = {row["name"] for row in self._connection().execute("PRAGMA table_info(tasks)")}
        if "initiator_can_complete" not in columns:
            self._connection().execute(
                "ALTER TABLE tasks ADD COLUMN initiator_can_complete INTEGER NOT NULL DEFAULT 1"
            )

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA foreign_keys=ON")
            self._local.connection = connection
        return connection

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of writes: all of them land, or none (nested use joins the outer one)."""
        connection = self._connection()
        if connection.in_transaction:
            yield connection
            return
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return [_decode(row) for row in self._connection().execute(sql, params)]

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self._connection().execute(sql, params).fetchone()
        return None if row is None else row[0]

    def insert(self, table: str, values: dict[str, Any]) -> None:
        encoded = _encode(values)
        columns = ", ".join(encoded)
        placeholders = ", ".join("?" for _ in encoded)
        with self.transaction() as connection:
            connection.execute(
                f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", list(encoded.values())
            )

    def upsert(self, table: str, values: dict[str, Any], key_columns: Sequence[str]) -> None:
        encoded = _encode(values)
        columns = ", ".join(encoded)
        placeholders = ", ".join("?" for _ in encoded)
        updates = ", ".join(f"{c} = excluded.{c}" for c in encoded if c not in key_columns)
        with self.transaction() as connection:
            connection.execute(
                f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) "
                f"ON CONFLICT ({', '.join(key_columns)}) DO UPDATE SET {updates}",
                list(encoded.values()),
            )

    def update(self, table: str, key_column: str, key: Any, changes: dict[str, Any]) -> None:
        encoded = _encode(changes)
        assignments = ", ".join(f"{column} = ?" for column in encoded)
        with self.transaction() as connection:
            connection.execute(
                f"UPDATE {table} SET {assignments} WHERE {key_column} = ?", [*encoded.values(), key]
            )

    def page(
        self,
        table: str,
        conditions: Sequence[tuple[str, Sequence[Any]]],
        order_by: str,
        offset: int,
        count: int,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of ``table`` rows matching every ``(sql, params)`` condition, and the total."""
        where = " AND ".join(f"({sql})" for sql, _ in conditions) or "1 = 1"
        params = [param for _, condition_params in conditions for param in condition_params]
        total = self.scalar(f"SELECT COUNT(*) FROM {table} WHERE {where}", params)
        rows = self.query(
            f"SELECT * FROM {table} WHERE {where} ORDER BY {order_by} LIMIT ? OFFSET ?",
            [*params, count, offset],
        )
        return rows, total

    def get_setting(self, key: str, default: Any) -> Any:
        row = self.query_one("SELECT value FROM settings WHERE key = ?", [key])
        return default if row is None else row["value"]

    def set_setting(self, key: str, value: Any) -> None:
        """Settings hold any JSON value (the ``value`` column is a JSON column)."""
        self.upsert("settings", {"key": key, "value": value}, ["key"])
