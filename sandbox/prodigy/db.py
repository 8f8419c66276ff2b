"""Prodigy's database: the ``dataset``, ``example`` and ``link`` tables, written with peewee as Prodigy does.

``dataset(id, name UNIQUE, created INTEGER unix seconds, meta BLOB json, session BOOLEAN)``,
``example(id, input_hash BIGINT, task_hash BIGINT, content BLOB json of the whole task)`` and
``link(id, example_id -> example, dataset_id -> dataset)``. An example is stored once and linked to every
dataset it belongs to: its dataset and, for an answer, the session dataset named after the session id.

``connect()`` opens the database named by Prodigy's configuration (SQLite ``prodigy.db`` in ``PRODIGY_HOME``
by default, or PostgreSQL with psycopg2 keyword arguments in ``db_settings.postgresql``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from peewee import (
    BigIntegerField,
    BlobField,
    BooleanField,
    CharField,
    ForeignKeyField,
    IntegerField,
    Model,
    OperationalError,
    PostgresqlDatabase,
    SqliteDatabase,
    fn,
)
from peewee import Database as PeeweeDatabase

from sandbox.prodigy.config import load_config, prodigy_home
from sandbox.prodigy.errors import ProdigyError
from sandbox.prodigy.tasks import INPUT_HASH, TASK_HASH, dumps, set_hashes

INSERT_CHUNK = 500


def check_dataset_name(name: str) -> None:
    """Prodigy's rule: a dataset name is not empty and has no commas or spaces."""
    if not isinstance(name, str) or not name or "," in name or any(char.isspace() for char in name):
        raise ProdigyError(f"invalid dataset name {name!r}: it cannot be empty or contain commas or spaces")


def _bound_models(db: PeeweeDatabase) -> tuple[type[Model], type[Model], type[Model]]:
    """Prodigy's three models bound to one database (a process may hold a SQLite and a PostgreSQL one)."""

    class Dataset(Model):
        name = CharField(unique=True)
        created = IntegerField(default=lambda: int(time.time()))
        meta = BlobField()
        session = BooleanField(default=False)

        class Meta:
            database = db
            table_name = "dataset"

    class Example(Model):
        input_hash = BigIntegerField()
        task_hash = BigIntegerField()
        content = BlobField()

        class Meta:
            database = db
            table_name = "example"

    class Link(Model):
        example = ForeignKeyField(Example)
        dataset = ForeignKeyField(Dataset)

        class Meta:
            database = db
            table_name = "link"

    return Dataset, Example, Link


def _json_bytes(value: Any) -> bytes:
    return dumps(value).encode("utf-8")


def _raw(content: bytes | memoryview) -> bytes:
    """BLOB columns come back as bytes (SQLite) or memoryview (psycopg2's BYTEA)."""
    return content.tobytes() if isinstance(content, memoryview) else bytes(content)


class Database:
    """Prodigy's ``Database`` API in small: datasets, sessions, adding and reading examples."""

    def __init__(self, db: PeeweeDatabase, db_id: str, db_name: str) -> None:
        self.db = db
        self.db_id = db_id
        self.db_name = db_name
        self.Dataset, self.Example, self.Link = _bound_models(db)
        try:
            db.connect(reuse_if_open=True)
        except OperationalError as err:
            raise ProdigyError(f"cannot open the {db_id} database {db_name}: {err}".strip()) from None
        db.create_tables([self.Dataset, self.Example, self.Link], safe=True)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __contains__(self, name: str) -> bool:
        return self.Dataset.select().where(self.Dataset.name == name).exists()

    def _names(self, session: bool) -> list[str]:
        query = self.Dataset.select(self.Dataset.name).where(self.Dataset.session == session)
        return [row.name for row in query.order_by(self.Dataset.id)]

    @property
    def datasets(self) -> list[str]:
        """Names of the datasets that are not session datasets, oldest first."""
        return self._names(session=False)

    @property
    def sessions(self) -> list[str]:
        """Names of the session datasets, oldest first."""
        return self._names(session=True)

    def _get(self, name: str) -> Model:
        dataset = self.Dataset.get_or_none(self.Dataset.name == name)
        if dataset is None:
            raise ProdigyError(f"dataset {name!r} not found in the {self.db_id} database {self.db_name}")
        return dataset

    def add_dataset(self, name: str, meta: dict[str, Any] | None = None, session: bool = False) -> None:
        """Create a dataset (a session dataset with ``session=True``); an existing one is left as it is."""
        check_dataset_name(name)
        if name not in self:
            self.Dataset.create(name=name, meta=_json_bytes(meta or {}), session=session)

    def get_meta(self, name: str) -> dict[str, Any]:
        dataset = self._get(name)
        return {**json.loads(_raw(dataset.meta)), "created": dataset.created}

    def _insert_examples(self, tasks: list[dict[str, Any]]) -> list[int]:
        rows = [
            {"input_hash": task[INPUT_HASH], "task_hash": task[TASK_HASH], "content": _json_bytes(task)}
            for task in tasks
        ]
        if self.db.returning_clause:
            query = self.Example.insert_many(rows).returning(self.Example.id)
            return [row.id for row in query.execute()]
        return [self.Example.insert(**row).execute() for row in rows]

    def add_examples(self, examples: Iterable[dict[str, Any]], datasets: Iterable[str] = ()) -> int:
        """Store the examples and link each to every named dataset, all or nothing; returns how many.

        The datasets must exist (``add_dataset`` first), as in Prodigy. Examples without hashes get them.
        Streams in chunks, so a large iterable is not held in memory.
        """
        targets = [self._get(name).id for name in datasets]
        added = 0
        examples = iter(examples)
        with self.db.atomic():
            while chunk := [set_hashes(dict(task)) for task in islice(examples, INSERT_CHUNK)]:
                ids = self._insert_examples(chunk)
                links = [{"example": example, "dataset": target} for example in ids for target in targets]
                if links:
                    self.Link.insert_many(links).execute()
                added += len(chunk)
        return added

    def _linked_content(self, name: str) -> Any:
        return (
            self.Example.select(self.Example.content)
            .join(self.Link)
            .where(self.Link.dataset == self._get(name).id)
            .order_by(self.Link.id)
            .tuples()
            .iterator()
        )

    def iter_raw_examples(self, name: str) -> Iterator[bytes]:
        """The stored JSON of each example in the dataset, in the order they were added, unparsed."""
        for (content,) in self._linked_content(name):
            yield _raw(content)

    def get_dataset_examples(self, name: str) -> Iterator[dict[str, Any]]:
        """Each example of the dataset as a dict, streamed in the order they were added."""
        for content in self.iter_raw_examples(name):
            yield json.loads(content)

    def count_dataset(self, name: str) -> int:
        return self.Link.select().where(self.Link.dataset == self._get(name).id).count()

    def session_counts(self, name: str) -> dict[str, int]:
        """Examples of the dataset per session dataset they are also linked to."""
        dataset_id = self._get(name).id
        in_dataset = self.Link.select(self.Link.example).where(self.Link.dataset == dataset_id)
        query = (
            self.Dataset.select(self.Dataset.name, fn.COUNT(self.Link.id))
            .join(self.Link)
            .where(self.Dataset.session == True, self.Link.example.in_(in_dataset))  # noqa: E712 (SQL, not Python)
            .group_by(self.Dataset.name)
            .order_by(self.Dataset.name)
            .tuples()
        )
        return dict(query)

    def drop_dataset(self, name: str) -> int:
        """Delete the dataset, its links and the examples nothing else links; returns the links removed."""
        dataset_id = self._get(name).id
        with self.db.atomic():
            removed = self.Link.delete().where(self.Link.dataset == dataset_id).execute()
            self.Dataset.delete().where(self.Dataset.id == dataset_id).execute()
            linked = self.Link.select(self.Link.example)
            self.Example.delete().where(self.Example.id.not_in(linked)).execute()
        return removed


def connect(config: dict[str, Any] | None = None) -> Database:
    """Open the database Prodigy's configuration names (``load_config()`` when no config is given)."""
    config = load_config() if config is None else config
    db_id = config.get("db", "sqlite")
    settings = dict((config.get("db_settings") or {}).get(db_id) or {})
    if db_id == "sqlite":
        name = settings.pop("name", "prodigy.db")
        folder = Path(settings.pop("path", None) or prodigy_home()).expanduser()
        if name != ":memory:":
            folder.mkdir(parents=True, exist_ok=True)
            name = str(folder / name)
        return Database(SqliteDatabase(name, **settings), db_id, name)
    if db_id == "postgresql":
        dbname = settings.pop("dbname", None) or settings.pop("database", None)
        where = f"{dbname} on {settings.get('host', 'localhost')}:{settings.get('port', 5432)}"
        return Database(PostgresqlDatabase(dbname, **settings), db_id, where)
    raise ProdigyError(f"database {db_id!r} in prodigy.json is not supported (use 'sqlite' or 'postgresql')")
