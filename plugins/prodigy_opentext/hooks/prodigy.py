"""Hook for Prodigy's annotation database."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from prodigy_opentext._prodigy.database import (
    DatabaseTarget,
    database_target,
    prodigy_tables,
    sqlite_member_ids,
)
from prodigy_opentext.core.export import JsonlSink, QuarantineFile, RecordSink, export_records
from prodigy_opentext.core.payloads import BatchCounts, ExportManifest
from prodigy_opentext.core.records import (
    AnnotationProgress,
    as_bytes,
    check_answer,
    check_dataset_name,
    check_hashes,
    check_input,
    check_record,
    decode_record,
    dedupe_key,
    dumps_compact,
    parse_record,
    scan_record,
)
from prodigy_opentext.exceptions import DatasetNotFoundError, InvalidRecord, ProdigyDatabaseError
from prodigy_opentext.failures import ConnectionMissing

if TYPE_CHECKING:
    import sqlalchemy as sa

# Rows per batch read. A few hundred typical tasks (NER rows are ~2.5 KB) stay within a core's L2 cache while
# they are checked, joined and handed to the writer: 256 exports ~20% faster than 2000 on the bench.
DEFAULT_BATCH_SIZE = 256
INSERT_CHUNK = 500
SQLITE_IDS_PER_QUERY = 500


# The statements of a write that every call runs, as SQL text: each hook has its own engine, so its own
# statement cache, and a hook is built per task; text costs a fraction of what compiling Core constructs does.
@cache
def _dataset_id_query() -> sa.TextClause:
    import sqlalchemy as sa

    return sa.text("SELECT id FROM dataset WHERE name = :name")


@cache
def _link_insert() -> sa.TextClause:
    """The links of new examples, for SQLite: its driver's executemany, as the Core insert would run, without
    compiling one (elsewhere the Core insert, which the dialect batches into multi-row statements)."""
    import sqlalchemy as sa

    return sa.text("INSERT INTO link (example_id, dataset_id) VALUES (:example_id, :dataset_id)")


@cache
def _stored_keys_query(indexed: bool) -> sa.TextClause:
    """The stored examples of a dataset with one of the task hashes: looked up by task hash, each hit's
    links by example id, when ``example(task_hash)`` is indexed (``+ 0`` keeps SQLite's planner off
    link(dataset_id), which would walk the whole dataset); else by walking the dataset's links, the cheaper
    way without that index."""
    import sqlalchemy as sa

    in_dataset = "link.dataset_id + 0 = :dataset_id" if indexed else "link.dataset_id = :dataset_id"
    sql = (
        "SELECT example.id, example.content FROM example JOIN link ON link.example_id = example.id "
        f"WHERE {in_dataset} AND example.task_hash IN :hashes"
    )
    return sa.text(sql).bindparams(sa.bindparam("hashes", expanding=True))


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class ProdigyHook(BaseHook):
    """Read and write Prodigy datasets in the SQL database Prodigy itself uses.

    The connection's extra takes Prodigy's own ``prodigy.json`` settings
    (``{"db": "sqlite", "db_settings": {"sqlite": {"name": "prodigy.db", "path": "/data"}}}``) so a team can
    paste what it already has; for PostgreSQL and MySQL the host, login, password, schema (database name)
    and port fields work as well.

    ``pooled=False`` opens a connection for each read and closes it after: for long waits in the triggerer,
    where a pool per trigger would keep one idle connection per waiting task.
    """

    conn_name_attr = "prodigy_conn_id"
    default_conn_name = "prodigy_default"
    conn_type = "prodigy"
    hook_name = "Prodigy"

    def __init__(self, prodigy_conn_id: str = default_conn_name, pooled: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prodigy_conn_id = prodigy_conn_id
        self.pooled = pooled
        self._tables_exist = False
        self._task_hash_indexed: bool | None = None  # known on the first write

    # Connection and engine

    @cached_property
    def target(self) -> DatabaseTarget:
        """The database the connection names, read the way Prodigy reads ``db`` and ``db_settings``."""
        try:
            connection = self.get_connection(self.prodigy_conn_id)
        except AirflowNotFoundException:
            raise ConnectionMissing.named(self.prodigy_conn_id, self.conn_type) from None
        return database_target(connection)

    def get_conn(self) -> sa.Engine:
        """The SQLAlchemy engine, created once per hook."""
        return self._engine

    @cached_property
    def _engine(self) -> sa.Engine:
        import sqlalchemy as sa

        target = self.target
        connect_args = {"timeout": 30} if target.sqlite_path else {"connect_timeout": 10}
        # A server's connections can go stale in the pool; a SQLite file's cannot, so a ping would be a
        # statement for nothing on every checkout.
        pooling: dict[str, Any] = {"pool_pre_ping": not target.sqlite_path} if self.pooled else {}
        if not self.pooled:
            pooling["poolclass"] = sa.pool.NullPool
        try:
            return sa.create_engine(target.url, connect_args=connect_args, **pooling)
        except ImportError as err:
            raise ProdigyDatabaseError(
                f"connection {self.prodigy_conn_id!r}: the driver for Prodigy's {target.description} is not "
                f"installed ({err.name}; MySQL needs PyMySQL)"
            ) from err

    @property
    def is_sqlite(self) -> bool:
        return self.target.sqlite_path is not None

    @contextmanager
    def _connection(self, *, write: bool = False) -> Iterator[sa.Connection]:
        """A connection; reads need an existing database, writes create Prodigy's tables when missing."""
        import sqlalchemy as sa

        target = self.target
        if target.sqlite_path is not None:
            if write:
                target.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            elif not target.sqlite_path.exists():
                raise ProdigyDatabaseError(
                    f"no Prodigy database at {target.sqlite_path} (connection {self.prodigy_conn_id!r})"
                )
        try:
            conn = self.get_conn().connect()
        except sa.exc.DBAPIError as err:
            raise ProdigyDatabaseError(
                f"cannot connect to Prodigy's {target.description} (connection {self.prodigy_conn_id!r}): "
                f"{_first_line(err.orig or err)}"
            ) from err
        with conn:
            if write and self._task_hash_indexed is None:
                self._prepare_for_writes(conn)
            yield conn

    def _prepare_for_writes(self, conn: sa.Connection) -> None:
        """Create Prodigy's tables where missing, and learn whether ``example(task_hash)`` is indexed,
        creating the index in a database Prodigy created (once: one scan of the example table). One look
        at the schema, once per hook. A database that refuses the index (no right to change the table) is
        written without it: the same de-duplication, reading each dataset's stored examples on every write.
        """
        import sqlalchemy as sa

        tables = prodigy_tables()
        with conn.begin():
            inspector = sa.inspect(conn)
            known = self._tables_exist  # a read of this hook found them
            missing = set() if known else {"dataset", "example", "link"} - set(inspector.get_table_names())
            if missing:
                tables.metadata.create_all(conn, checkfirst=True)  # a new example table comes indexed
            indexed = "example" in missing or any(
                found.get("column_names") == ["task_hash"] for found in inspector.get_indexes("example")
            )
        self._tables_exist = True
        if not indexed:
            index = tables.task_hash_index
            try:
                with conn.begin():
                    index.create(conn, checkfirst=True)
            except sa.exc.DBAPIError as err:
                self.log.warning(
                    "Prodigy's %s refused the index %s (%s): examples are de-duplicated without it, "
                    "reading each dataset's stored examples on every write",
                    self.target.description,
                    index.name,
                    _first_line(err.orig or err),
                )
            else:
                self.log.info("Indexed example(task_hash) in Prodigy's %s", self.target.description)
                indexed = True
        self._task_hash_indexed = indexed

    def _has_tables(self, conn: sa.Connection) -> bool:
        import sqlalchemy as sa

        if not self._tables_exist:
            self._tables_exist = sa.inspect(conn).has_table("link")
        return self._tables_exist

    def _dataset_row(self, conn: sa.Connection, name: str) -> Any:
        import sqlalchemy as sa

        check_dataset_name(name)
        dataset = prodigy_tables().dataset
        row = None
        if self._has_tables(conn):
            row = conn.execute(sa.select(dataset).where(dataset.c.name == name)).first()
        if row is None:
            raise DatasetNotFoundError(f"dataset {name!r} not found in Prodigy's {self.target.description}")
        return row

    def _decode_meta(self, name: str, meta: Any) -> dict[str, Any]:
        try:
            value = json.loads(as_bytes(meta) or b"{}")
        except (ValueError, UnicodeDecodeError) as err:
            raise ValueError(f"dataset {name!r}: field 'meta' is not valid JSON ({err})") from None
        if not isinstance(value, dict):
            raise ValueError(
                f"dataset {name!r}: field 'meta' is a JSON {type(value).__name__}, not an object"
            )
        return value

    def test_connection(self) -> tuple[bool, str]:
        """Open the database and count its datasets."""
        import sqlalchemy as sa

        try:
            with self._connection() as conn:
                datasets = 0
                if self._has_tables(conn):
                    dataset = prodigy_tables().dataset
                    datasets = conn.execute(sa.select(sa.func.count()).select_from(dataset)).scalar_one()
        except Exception as err:
            return False, str(err)
        return True, f"Connected to Prodigy's {self.target.description}: {datasets} datasets"

    # Datasets

    def list_datasets(self, session: bool = False) -> list[dict[str, Any]]:
        """Datasets (with ``session=True``: session datasets) by name: meta, created, session, examples."""
        import sqlalchemy as sa

        tables = prodigy_tables()
        dataset, link = tables.dataset, tables.link
        examples = (
            sa.select(sa.func.count(link.c.id)).where(link.c.dataset_id == dataset.c.id).scalar_subquery()
        )
        query = (
            sa.select(dataset.c.name, dataset.c.created, dataset.c.meta, dataset.c.session, examples)
            .where(dataset.c.session == session)
            .order_by(dataset.c.name)
        )
        with self._connection() as conn:
            if not self._has_tables(conn):
                return []
            rows = conn.execute(query).all()
        return [
            {
                "name": name,
                "created": created,
                "meta": self._decode_meta(name, meta),
                "session": bool(is_session),
                "examples": count,
            }
            for name, created, meta, is_session, count in rows
        ]

    def get_meta(self, dataset: str) -> dict[str, Any]:
        check_dataset_name(dataset)
        with self._connection() as conn:
            row = self._dataset_row(conn, dataset)
        return self._decode_meta(dataset, row.meta)

    def set_meta(self, dataset: str, meta: dict[str, Any]) -> dict[str, Any]:
        """Merge ``meta`` into the dataset's meta (review state, sign-off) and return the result."""
        check_dataset_name(dataset)
        import sqlalchemy as sa

        table = prodigy_tables().dataset
        with self._connection(write=True) as conn, conn.begin():
            row = self._dataset_row(conn, dataset)
            merged = {**self._decode_meta(dataset, row.meta), **meta}
            conn.execute(
                sa.update(table)
                .where(table.c.id == row.id)
                .values(meta=dumps_compact(merged).encode("utf-8"))
            )
        return merged

    def add_dataset(self, name: str, meta: dict[str, Any] | None = None, session: bool = False) -> bool:
        """Create a dataset as Prodigy does (an existing one is left as it is); returns whether it was new."""
        check_dataset_name(name)
        with self._connection(write=True) as conn, conn.begin():
            return self._ensure_dataset(conn, name, meta or {}, session)[1]

    def _ensure_dataset(
        self, conn: sa.Connection, name: str, meta: dict[str, Any], session: bool
    ) -> tuple[int, bool]:
        import sqlalchemy as sa

        table = prodigy_tables().dataset
        existing = conn.execute(_dataset_id_query(), {"name": name}).scalar()
        if existing is not None:
            return existing, False
        values = {
            "name": name,
            "created": int(time.time()),
            "meta": dumps_compact(meta).encode("utf-8"),
            "session": session,
        }
        return conn.execute(sa.insert(table).values(values).returning(table.c.id)).scalar_one(), True

    def count(self, dataset: str, answer: str | None = None) -> int:
        """Examples in the dataset; with ``answer``, the valid examples with that answer."""
        import sqlalchemy as sa

        check_dataset_name(dataset)
        if answer is not None:
            check_answer(answer)
            return self.annotator_progress(dataset)["by_answer"].get(answer, 0)
        link = prodigy_tables().link
        with self._connection() as conn:
            dataset_id = self._dataset_row(conn, dataset).id
            query = sa.select(sa.func.count()).select_from(link).where(link.c.dataset_id == dataset_id)
            return conn.execute(query).scalar_one()

    def last_example_id(self, dataset: str) -> int | None:
        """The newest example id in the dataset (None when empty): where a batch of answers ends."""
        import sqlalchemy as sa

        check_dataset_name(dataset)
        link = prodigy_tables().link
        with self._connection() as conn:
            dataset_id = self._dataset_row(conn, dataset).id
            query = sa.select(sa.func.max(link.c.example_id)).where(link.c.dataset_id == dataset_id)
            return conn.execute(query).scalar()

    # Reading examples

    def iter_row_batches(
        self,
        dataset: str,
        *,
        session: str | None = None,
        since_id: int | None = None,
        until_id: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> Iterator[Sequence[tuple[int, bytes | memoryview]]]:
        """Batches of ``(example_id, stored content)`` in example id order, in bounded memory.

        ``session`` keeps the examples also linked to that session dataset; ``since_id`` those after that
        example id (incremental reads) and ``until_id`` those up to it (a batch that ends at a known id).
        PostgreSQL and MySQL stream one query through a server-side cursor; SQLite reads chunks by example
        id (see ``_sqlite_chunks``).
        """
        import sqlalchemy as sa

        names = (dataset, session) if session is not None else (dataset,)
        for name in names:
            check_dataset_name(name)
        tables = prodigy_tables()
        example, link = tables.example, tables.link
        with self._connection() as conn:
            dataset_ids = [self._dataset_row(conn, name).id for name in names]
            if self.is_sqlite:
                yield from self._sqlite_chunks(conn, dataset_ids, since_id, until_id, batch_size)
                return
            filters: list[sa.ColumnElement[bool]] = []
            for dataset_id in dataset_ids:
                linked = link.alias()
                filters.append(
                    sa.exists().where(linked.c.example_id == example.c.id, linked.c.dataset_id == dataset_id)
                )
            if since_id is not None:
                filters.append(example.c.id > since_id)
            if until_id is not None:
                filters.append(example.c.id <= until_id)
            query = sa.select(example.c.id, example.c.content).where(*filters).order_by(example.c.id)
            streaming = conn.execution_options(stream_results=True, max_row_buffer=batch_size)
            yield from streaming.execute(query).partitions(batch_size)

    @staticmethod
    def _sqlite_chunks(
        conn: sa.Connection,
        dataset_ids: list[int],
        since_id: int | None,
        until_id: int | None,
        batch_size: int,
    ) -> Iterator[list[tuple[int, bytes]]]:
        """Chunks by example id on SQLite's own cursor: the export's hot path, where row objects cost a third.

        The dataset's example ids come first from Prodigy's link(dataset_id) index (8 bytes each; a snapshot,
        so answers added meanwhile wait for the next export). Each chunk of ids is then one range scan of the
        example table when the ids are contiguous, as Prodigy writes them, else a lookup by id. This costs
        less than checking each example's links, and no read lock is held between chunks while Prodigy writes.
        """
        driver = conn.connection.driver_connection
        if driver is None:
            raise ProdigyDatabaseError("the SQLite connection was closed while reading")
        cursor = driver.cursor()
        try:
            ids = sqlite_member_ids(cursor, dataset_ids, since_id, until_id)
            for start in range(0, len(ids), batch_size):
                chunk = ids[start : start + batch_size]
                if chunk[-1] - chunk[0] + 1 == len(chunk):
                    query = "SELECT id, content FROM example WHERE id BETWEEN ? AND ? ORDER BY id"
                    yield cursor.execute(query, (chunk[0], chunk[-1])).fetchall()
                    continue
                rows: list[tuple[int, bytes]] = []
                for part in range(0, len(chunk), SQLITE_IDS_PER_QUERY):
                    some = chunk[part : part + SQLITE_IDS_PER_QUERY]
                    marks = ",".join("?" * len(some))
                    query = f"SELECT id, content FROM example WHERE id IN ({marks}) ORDER BY id"
                    rows += cursor.execute(query, tuple(some)).fetchall()
                yield rows
        finally:
            cursor.close()

    def iter_rows(self, dataset: str, **filters: Any) -> Iterator[tuple[int, bytes]]:
        """``(example_id, content bytes)`` one by one; takes the filters of :meth:`iter_row_batches`."""
        for batch in self.iter_row_batches(dataset, **filters):
            for example_id, content in batch:
                yield example_id, as_bytes(content)

    def iter_examples(
        self,
        dataset: str,
        *,
        session: str | None = None,
        answer: str | None = None,
        since_id: int | None = None,
        until_id: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> Iterator[dict[str, Any]]:
        """Task dicts in example id order; an invalid stored row raises :class:`InvalidRecord` with its id."""
        if answer is not None:
            check_answer(answer)
        rows = self.iter_rows(
            dataset, session=session, since_id=since_id, until_id=until_id, batch_size=batch_size
        )
        for example_id, content in rows:
            task = parse_record(content, row=example_id, where="example id")
            if answer is None or task["answer"] == answer:
                yield task

    def annotator_progress(self, dataset: str) -> dict[str, Any]:
        """Answers per annotator and answer, and how many inputs have how many distinct annotators."""
        return {"dataset": dataset, **self._progress(dataset).as_dict()}

    def _progress(self, dataset: str, progress: AnnotationProgress | None = None) -> AnnotationProgress:
        """Read the dataset's answers into ``progress``; one read before continues after its last example."""
        progress = progress if progress is not None else AnnotationProgress()
        for example_id, content in self.iter_rows(dataset, since_id=progress.last_example_id):
            try:
                keys = scan_record(content, row=example_id, where="example id")
            except InvalidRecord:
                progress.invalid.append(example_id)
                progress.last_task_hash = None
            else:
                progress.add(keys)
                progress.last_task_hash = keys["_task_hash"]
            progress.last_example_id = example_id
        return progress

    def _read_point(self, dataset: str, until_id: int | None) -> tuple[Any, ...]:
        """What an incremental read saw of the dataset up to example ``until_id``: the dataset's row id and
        creation time, its distinct examples up to there and the task hash stored at ``until_id``."""
        import sqlalchemy as sa

        tables = prodigy_tables()
        example, link = tables.example, tables.link
        with self._connection() as conn:
            row = self._dataset_row(conn, dataset)
            if until_id is None:
                return row.id, row.created, 0, None
            linked = (link.c.dataset_id == row.id) & (link.c.example_id <= until_id)
            count = sa.select(sa.func.count(sa.distinct(link.c.example_id))).where(linked)
            task_hash = (
                sa.select(example.c.task_hash)
                .join(link, link.c.example_id == example.c.id)
                .where(link.c.dataset_id == row.id, example.c.id == until_id)
                .limit(1)
            )
            return row.id, row.created, conn.execute(count).scalar_one(), conn.execute(task_hash).scalar()

    def batch_counts(
        self,
        dataset: str,
        annotators_per_input: int | None = None,
        progress: AnnotationProgress | None = None,
    ) -> BatchCounts:
        """What a :class:`~prodigy_opentext.core.records.BatchTarget` is checked against.

        ``answers`` is Prodigy's own count of the dataset; with ``annotators_per_input`` also ``inputs``
        (distinct input hashes answered) and ``inputs_done`` (those with that many distinct annotators).
        A wait that polls passes the same ``progress`` each time: only answers after the last example read are
        read, unless the dataset no longer holds exactly what was read up to there (dropped and created again,
        its ids reused; an answer committed late with a lower id, as PostgreSQL sequences allow): then all.
        """
        counts = BatchCounts(dataset=dataset, answers=self.count(dataset))
        if annotators_per_input is not None:
            progress = progress if progress is not None else AnnotationProgress()
            point = self._read_point(dataset, progress.last_example_id)
            read = (*progress.source, progress.total + len(progress.invalid), progress.last_task_hash)
            if progress.last_example_id is not None and point != read:
                progress.reset()
            progress.source = point[:2]
            self._progress(dataset, progress)
            counts["inputs"] = len(progress.annotators_by_input)
            counts["inputs_done"] = progress.inputs_with(annotators_per_input)
            counts["annotators"] = len(progress.annotators)
            counts["invalid"] = len(progress.invalid)
        return counts

    # Writing examples

    def add_examples(
        self, dataset: str, examples: Iterable[dict[str, Any]], session: str | None = None
    ) -> dict[str, int]:
        """Store examples in the dataset, all or nothing, skipping those already there.

        An answer is already there when the dataset holds the same task hash from the same annotator (so two
        annotators' answers to one task both stay); a task without an answer, when it holds the task hash.
        Each answer is also linked to its session dataset, as Prodigy does: ``session`` when given, else the
        example's ``_session_id``. Examples need both hashes; the row number in ``examples`` names a bad one.
        """
        check_dataset_name(dataset)
        if session is not None:
            check_dataset_name(session)
        tasks = list(examples)
        for index, task in enumerate(tasks):
            if not isinstance(task, dict):
                raise InvalidRecord(
                    index, "content", f"a {type(task).__name__}, not a task dict", where="example"
                )
            if "answer" in task:
                check_record(task, row=index, where="example")
            else:
                check_hashes(task, row=index, where="example")
                check_input(task, row=index, where="example")
        with self._connection(write=True) as conn, conn.begin():
            dataset_id, _ = self._ensure_dataset(conn, dataset, {}, False)
            stored = self._stored_keys(conn, dataset_id, {task["_task_hash"] for task in tasks})
            new = []
            for task in tasks:
                key = dedupe_key(task)
                if key not in stored:
                    stored.add(key)
                    new.append(task)
            session_ids: dict[str, int] = {}
            for start in range(0, len(new), INSERT_CHUNK):
                self._insert(conn, new[start : start + INSERT_CHUNK], dataset_id, session, session_ids)
        return {"added": len(new), "skipped": len(tasks) - len(new)}

    def _stored_keys(
        self, conn: sa.Connection, dataset_id: int, task_hashes: set[Any]
    ) -> set[tuple[Any, ...]]:
        """The dedupe keys of the dataset's stored examples sharing a task hash with the new ones: only those
        can be the same example. They are found through the index on example(task_hash), so a dataset
        written in small batches (a case at a time) costs each batch the same, however much it holds."""
        query = _stored_keys_query(bool(self._task_hash_indexed))
        hashes = sorted(task_hashes)
        keys = set()
        for start in range(0, len(hashes), INSERT_CHUNK):
            found = conn.execute(
                query, {"dataset_id": dataset_id, "hashes": hashes[start : start + INSERT_CHUNK]}
            )
            for example_id, content in found:
                try:
                    task = decode_record(as_bytes(content), row=example_id, where="example id")
                except InvalidRecord:
                    continue  # an unreadable stored row cannot be the same example as a valid new one
                keys.add(dedupe_key(task))
        return keys

    def _insert(
        self,
        conn: sa.Connection,
        tasks: list[dict[str, Any]],
        dataset_id: int,
        session: str | None,
        session_ids: dict[str, int],
    ) -> None:
        import sqlalchemy as sa

        tables = prodigy_tables()
        example, link = tables.example, tables.link
        rows = [
            {
                "input_hash": task["_input_hash"],
                "task_hash": task["_task_hash"],
                "content": dumps_compact(task).encode("utf-8"),
            }
            for task in tasks
        ]
        inserted = conn.execute(
            sa.insert(example).returning(example.c.id, sort_by_parameter_order=True), rows
        )
        links = []
        for task, example_id in zip(tasks, inserted.scalars(), strict=True):
            links.append({"example_id": example_id, "dataset_id": dataset_id})
            session_name = session or task.get("_session_id")
            if "answer" in task and isinstance(session_name, str) and session_name:
                if session_name not in session_ids:
                    check_dataset_name(session_name)
                    session_ids[session_name] = self._ensure_dataset(conn, session_name, {}, True)[0]
                links.append({"example_id": example_id, "dataset_id": session_ids[session_name]})
        conn.execute(_link_insert() if self.is_sqlite else sa.insert(link), links)

    # Export

    def export(
        self,
        dataset: str,
        sink: RecordSink,
        *,
        quarantine_path: Path | str | None = None,
        session: str | None = None,
        answer: str | None = None,
        since_id: int | None = None,
        until_id: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_progress: Callable[[int], None] | None = None,
        progress_every: int = 100_000,
    ) -> ExportManifest:
        """Stream the dataset into ``sink``; invalid rows go to the quarantine file. Returns the manifest.

        The quarantine file defaults to ``<output>.quarantine.jsonl`` and is only created when a row fails.
        """
        check_dataset_name(dataset)
        if answer is not None:
            check_answer(answer)
        quarantine = QuarantineFile(
            quarantine_path or sink.path.with_name(sink.path.name + ".quarantine.jsonl")
        )
        batches = self.iter_row_batches(
            dataset, session=session, since_id=since_id, until_id=until_id, batch_size=batch_size
        )
        manifest = export_records(
            dataset,
            batches,
            sink,
            quarantine,
            answer=answer,
            on_progress=on_progress,
            progress_every=progress_every,
        )
        filters = {"session": session, "answer": answer, "since_id": since_id, "until_id": until_id}
        manifest["filters"] = filters
        return manifest

    def export_jsonl(self, dataset: str, path: Path | str, **filters: Any) -> ExportManifest:
        """Write the dataset to JSONL, each row as Prodigy stored it; takes :meth:`export`'s options."""
        check_dataset_name(dataset)
        return self.export(dataset, JsonlSink(path), **filters)
