"""Streaming export of Prodigy records into files: JSONL or Parquet, a quarantine for bad rows, a manifest.

Memory stays bounded by one batch of rows whatever the dataset's size; the file appears under its final
name only once it is whole. Plain Python (no Airflow import).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import secrets
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import repeat
from operator import contains
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from prodigy_opentext.core.payloads import ExportManifest
from prodigy_opentext.core.records import (
    RawRecord,
    RecordSummary,
    annotator_of,
    as_bytes,
    dumps_compact,
    record_labels,
    scan_record,
)
from prodigy_opentext.exceptions import InvalidRecord

CHUNK = 1 << 20


def partial_path(path: Path) -> Path:
    """Where a file is written before it is renamed into place: beside it, unique to this writer, so two
    writers of the same file (two runs of one batch) never write into one partial file."""
    return path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")


class FileDigest(NamedTuple):
    sha256: str
    bytes: int


def file_digest(path: str | os.PathLike) -> FileDigest:
    """SHA-256 and size of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return FileDigest(digest.hexdigest(), size)


class RecordSink(Protocol):
    """Where an export writes valid records: ``write`` a batch, then ``close`` (or ``abort`` on failure)."""

    path: Path

    def write(self, rows: list[tuple[int, bytes, dict[str, Any]]]) -> None: ...

    def close(self) -> dict[str, Any]: ...

    def abort(self) -> None: ...


def _one_line(raw: bytes) -> bytes:
    return dumps_compact(json.loads(raw)).encode("utf-8")


class _ChunkConsumer:
    """A thread that applies ``consume`` to each queued chunk; its first error is re-raised by ``check``.

    ``consume`` hashes and writes: both release the GIL for large buffers, so they run beside the exporting
    thread.
    """

    def __init__(self, name: str, consume: Callable[[bytes], Any], queued: int) -> None:
        self._consume = consume
        self._error: BaseException | None = None
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=queued)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._consume(chunk)
                except BaseException as err:  # re-raised in the exporting thread
                    self._error = err

    def check(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, chunk: bytes) -> None:
        self.check()
        self._queue.put(chunk)

    def finish(self) -> None:
        self._queue.put(None)
        self._thread.join()


class LinesByInput:
    """Where each line of a JSONL export is and which input it answers: 20 bytes a line, so the file can be
    read back one input at a time (:meth:`read`) without reading the database again."""

    def __init__(self) -> None:
        self._input_hashes = array("q")
        self._offsets = array("q")
        self._lengths = array("i")  # a line of 2 GiB is no Prodigy task
        self.size = 0
        """The bytes of the file the lines were written to (each line and its newline)."""

    def add(self, input_hash: int, offset: int, length: int) -> None:
        self._input_hashes.append(input_hash)
        self._offsets.append(offset)
        self._lengths.append(length)
        self.size = offset + length + 1

    def __len__(self) -> int:
        return len(self._offsets)

    def read(self, path: Path | str, chunk: int = 1 << 16) -> Iterator[tuple[int, list[int], list[bytes]]]:
        """``(input hash, its lines' offsets, its lines)`` in input-hash order, each input's lines in file
        order. Lines are read one by one (``pread``): the file stays in the page cache, not in this
        process's memory; the order is worked out ``chunk`` lines at a time."""
        import numpy as np

        hashes = np.frombuffer(self._input_hashes, dtype=np.int64)
        offsets = np.frombuffer(self._offsets, dtype=np.int64)
        lengths = np.frombuffer(self._lengths, dtype=np.int32)
        order = np.argsort(hashes, kind="stable")
        descriptor = os.open(path, os.O_RDONLY)
        try:
            if (found := os.fstat(descriptor).st_size) != self.size:
                raise OSError(
                    f"{path} holds {found} bytes, not the {self.size} exported: it was written again"
                )
            current: int | None = None
            places: list[int] = []
            lines: list[bytes] = []
            for start in range(0, len(order), chunk):
                some = order[start : start + chunk]
                for input_hash, offset, length in zip(
                    hashes[some].tolist(), offsets[some].tolist(), lengths[some].tolist(), strict=True
                ):
                    if input_hash != current:
                        if lines:
                            yield current, places, lines  # type: ignore[misc]
                        current, places, lines = input_hash, [], []
                    places.append(offset)
                    line = os.pread(descriptor, length, offset)
                    if len(line) != length:
                        raise OSError(f"{path}: {len(line)} of {length} bytes read at {offset}")
                    lines.append(line)
            if lines:
                yield current, places, lines  # type: ignore[misc]
        finally:
            os.close(descriptor)


class JsonlSink:
    """Writes records as JSONL, their stored bytes as they are, hashed and written by one background thread
    (both release the GIL; one thread, not two, halves the hand-offs with the exporting thread, and the
    chunk is still in cache for the write).

    The file is written beside itself (:func:`partial_path`) and renamed on ``close``, so a failed export
    leaves no half-written file under the final name. With ``by_input``, each line's place and input hash is
    recorded there as it is written.
    """

    def __init__(
        self, path: Path | str, *, queued_chunks: int = 4, by_input: LinesByInput | None = None
    ) -> None:
        self.path = Path(path)
        self.by_input = by_input
        self._partial = partial_path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self._partial.open("wb")
        self._digest = hashlib.sha256()
        self._bytes = 0
        self._writer = _ChunkConsumer(f"write-{self.path.name}", self._hash_and_write, queued_chunks)

    def write(self, rows: list[tuple[int, bytes, dict[str, Any]]]) -> None:
        lines = [raw for _, raw, _ in rows]
        lines.append(b"")
        chunk = b"\n".join(lines)
        if b"\r" in chunk or any(map(contains, lines, repeat(b"\n"))):
            # A stored task with a raw line break (pretty-printed JSON) would split a JSONL line: re-serialize
            # it. Checked in C first, since almost no chunk has one.
            lines = [raw if b"\n" not in raw and b"\r" not in raw else _one_line(raw) for raw in lines]
            chunk = b"\n".join(lines)
        if self.by_input is not None:
            offset, add = self._bytes, self.by_input.add
            for (_, _, keys), line in zip(rows, lines, strict=False):  # lines ends with the b"" joined last
                add(keys["_input_hash"], offset, len(line))
                offset += len(line) + 1
        self._writer.put(chunk)
        self._bytes += len(chunk)

    def _hash_and_write(self, chunk: bytes) -> None:
        self._digest.update(chunk)
        self._file.write(chunk)

    def _finish(self) -> None:
        self._writer.finish()
        self._file.close()

    def close(self) -> dict[str, Any]:
        self._finish()
        try:
            self._writer.check()
        except BaseException:
            self._partial.unlink(missing_ok=True)
            raise
        os.replace(self._partial, self.path)
        return {"path": str(self.path), "bytes": self._bytes, "sha256": self._digest.hexdigest()}

    def abort(self) -> None:
        self._finish()
        self._partial.unlink(missing_ok=True)


class ParquetSink:
    """Writes records to Parquet: the columns reviewers filter on, plus each task's full JSON in ``content``.

    Prodigy tasks vary in keys from row to row, so the task itself stays JSON; ``labels`` and ``annotator``
    are the values the manifest counts. Row groups are written as batches arrive (bounded memory).
    """

    def __init__(self, path: Path | str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._pa = pa
        self.path = Path(path)
        self._partial = partial_path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._schema = pa.schema(
            [
                ("example_id", pa.int64()),
                ("input_hash", pa.int64()),
                ("task_hash", pa.int64()),
                ("answer", pa.string()),
                ("annotator", pa.string()),
                ("labels", pa.list_(pa.string())),
                ("content", pa.string()),
            ]
        )
        self._writer = pq.ParquetWriter(self._partial, self._schema, compression="zstd")

    def write(self, rows: list[tuple[int, bytes, dict[str, Any]]]) -> None:
        columns = {
            "example_id": [example_id for example_id, _, _ in rows],
            "input_hash": [keys["_input_hash"] for _, _, keys in rows],
            "task_hash": [keys["_task_hash"] for _, _, keys in rows],
            "answer": [keys["answer"] for _, _, keys in rows],
            "annotator": [annotator_of(keys) for _, _, keys in rows],
            "labels": [record_labels(keys) for _, _, keys in rows],
            "content": [raw.decode("utf-8") for _, raw, _ in rows],
        }
        self._writer.write_table(self._pa.table(columns, schema=self._schema))

    def close(self) -> dict[str, Any]:
        self._writer.close()
        os.replace(self._partial, self.path)
        return {
            "path": str(self.path),
            "bytes": self.path.stat().st_size,
            "sha256": file_digest(self.path).sha256,
        }

    def abort(self) -> None:
        self._writer.close()
        self._partial.unlink(missing_ok=True)


class QuarantineFile:
    """JSONL of the rows an export could not use, with the reason; opened on the first bad row only."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.count = 0
        self._file: Any = None

    def add(self, example_id: int, raw: bytes, error: InvalidRecord) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", encoding="utf-8")
        entry: dict[str, Any] = {"example_id": example_id, "field": error.field, "error": str(error)}
        try:
            entry["content"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            entry["content_base64"] = base64.b64encode(raw).decode("ascii")
        self._file.write(dumps_compact(entry) + "\n")
        self.count += 1

    def close(self) -> str | None:
        if self._file is None:
            return None
        self._file.close()
        return str(self.path)


def export_records(
    dataset: str,
    batches: Iterable[Sequence[tuple[int, RawRecord]]],
    sink: RecordSink,
    quarantine: QuarantineFile,
    *,
    answer: str | None = None,
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 100_000,
) -> ExportManifest:
    """Stream ``(example_id, content)`` batches into ``sink``; return the export's manifest.

    Valid rows are written as stored; invalid ones go to ``quarantine`` with the reason. ``answer`` keeps
    only rows with that answer (a filter, not a failure). Memory stays bounded by one batch.
    """
    summary = RecordSummary()
    first_id = last_id = None
    read = 0
    next_report = progress_every
    count = summary.add_scanned
    try:
        for batch in batches:
            valid: list[tuple[int, bytes, dict[str, Any]]] = []
            keep = valid.append
            for example_id, content in batch:
                raw = content if content.__class__ is bytes else as_bytes(content)
                try:
                    keys = scan_record(raw, row=example_id, where="example id")
                except InvalidRecord as err:
                    quarantine.add(example_id, raw, err)
                    continue
                if answer is None or keys["answer"] == answer:
                    count(keys)
                    keep((example_id, raw, keys))
            if batch:
                first_id = batch[0][0] if first_id is None else first_id
                last_id = batch[-1][0]
                read += len(batch)
            if valid:
                sink.write(valid)
            if on_progress is not None and read >= next_report:
                on_progress(read)
                next_report = (read // progress_every + 1) * progress_every
        counts = summary.as_dict()
        output = sink.close()
    except BaseException:
        sink.abort()
        raise
    finally:
        quarantine_path = quarantine.close()
    return ExportManifest(
        dataset=dataset,
        path=output["path"],
        bytes=output["bytes"],
        sha256=output["sha256"],
        read=read,
        rows=counts["total"],
        by_answer=counts["by_answer"],
        by_label=counts["by_label"],
        by_annotator=counts["by_annotator"],
        first_example_id=first_id,
        last_example_id=last_id,
        quarantined=quarantine.count,
        quarantine_path=quarantine_path,
    )
