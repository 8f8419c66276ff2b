"""Prodigy's storage: its three tables as Prodigy's peewee models define them, and where its database is.

A ``prodigy`` connection's extra takes Prodigy's own ``prodigy.json`` settings, so a team pastes what it
already has; for PostgreSQL and MySQL the host, login, password, schema (database name) and port fields
work as well.
"""

from __future__ import annotations

import os
from array import array
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import sqlalchemy as sa
    from airflow.sdk import Connection

DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}
DRIVERS = {"postgresql": "postgresql+psycopg2", "mysql": "mysql+pymysql"}


class ProdigyTables(NamedTuple):
    metadata: sa.MetaData
    dataset: sa.Table
    example: sa.Table
    link: sa.Table
    task_hash_index: sa.Index


@cache
def prodigy_tables() -> ProdigyTables:
    """Prodigy's three tables as its peewee models define them (used to create them in a new database), and
    the one index the hook adds to them: ``example(task_hash)``, which Prodigy's models leave out.

    Without it, finding whether a dataset already holds an example (``add_examples``' de-duplication by task
    hash) means visiting every example of the dataset, so a dataset written case by case costs more with each
    case; with it, only the stored examples sharing a task hash with the new ones. Prodigy itself neither
    needs nor minds it (peewee creates its own indexes by their own names).
    """
    import sqlalchemy as sa

    metadata = sa.MetaData()
    dataset = sa.Table(
        "dataset",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("created", sa.Integer, nullable=False),
        sa.Column("meta", sa.LargeBinary, nullable=False),
        sa.Column("session", sa.Boolean, nullable=False),
    )
    example = sa.Table(
        "example",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("input_hash", sa.BigInteger, nullable=False),
        sa.Column("task_hash", sa.BigInteger, nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
    )
    link = sa.Table(
        "link",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("example_id", sa.Integer, sa.ForeignKey("example.id"), nullable=False, index=True),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("dataset.id"), nullable=False, index=True),
    )
    task_hash_index = sa.Index("ix_example_task_hash", example.c.task_hash)
    return ProdigyTables(metadata, dataset, example, link, task_hash_index)


@dataclass(frozen=True)
class DatabaseTarget:
    """Where Prodigy's database is: a SQLAlchemy URL, a description for messages and, for SQLite, the file."""

    url: sa.URL
    description: str
    sqlite_path: Path | None = None


def database_target(conn: Connection) -> DatabaseTarget:
    """The database a ``prodigy`` connection names, read the way Prodigy reads ``db`` and ``db_settings``."""
    import sqlalchemy as sa

    extra = conn.extra_dejson
    db = extra.get("db") or ("postgresql" if conn.host else "sqlite")
    settings = dict((extra.get("db_settings") or {}).get(db) or {})
    if db == "sqlite":
        name = settings.get("name") or "prodigy.db"
        if name == ":memory:":
            raise ValueError(f"connection {conn.conn_id!r}: an in-memory SQLite database is not shared")
        folder = settings.get("path") or os.environ.get("PRODIGY_HOME") or "~/.prodigy"
        path = Path(folder).expanduser() / name
        return DatabaseTarget(sa.URL.create("sqlite", database=str(path)), f"SQLite database {path}", path)
    if db not in DRIVERS:
        raise ValueError(f"connection {conn.conn_id!r}: db {db!r} is not one of sqlite, {', '.join(DRIVERS)}")
    host = conn.host or settings.pop("host", None) or "localhost"
    settings_port = settings.pop("port", None)
    port = int(conn.port or settings_port or DEFAULT_PORTS[db])
    settings_user = settings.pop("user", None)
    settings_password = settings.pop("password", None) or settings.pop("passwd", None)
    settings_database = (
        settings.pop("dbname", None) or settings.pop("database", None) or settings.pop("db", None)
    )
    database = conn.schema or settings_database
    url = sa.URL.create(
        DRIVERS[db],
        username=conn.login or settings_user,
        password=conn.password or settings_password,
        host=host,
        port=port,
        database=database,
        query={key: str(value) for key, value in settings.items()},
    )
    kind = "PostgreSQL" if db == "postgresql" else "MySQL"
    return DatabaseTarget(url, f"{kind} database {database!r} at {host}:{port}")


def sqlite_member_ids(
    cursor: Any, dataset_ids: list[int], since_id: int | None, until_id: int | None
) -> array[int]:
    """Sorted ids of the examples linked to every one of ``dataset_ids``, within ``(since_id, until_id]``."""
    query = "SELECT example_id FROM link WHERE dataset_id = ? AND example_id > ? AND example_id <= ?"
    bounds = (
        since_id if since_id is not None else -(1 << 63),
        until_id if until_id is not None else (1 << 63) - 1,
    )
    members = array("q")
    for position, dataset_id in enumerate(dataset_ids):
        ids = array("q", map(itemgetter(0), cursor.execute(query, (dataset_id, *bounds))))
        members = ids if position == 0 else array("q", set(members).intersection(ids))
    if not all(earlier < later for earlier, later in pairwise(members)):
        members = array("q", sorted(set(members)))
    return members
