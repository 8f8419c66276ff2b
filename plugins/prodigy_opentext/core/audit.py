"""Append-only, tamper-evident audit log: JSON lines, each entry chained to the one before by SHA-256.

Every entry carries ``prev_hash`` (the previous entry's ``hash``; 64 zeros for the first) and its own
``hash`` over its canonical JSON, so editing, removing or reordering any entry breaks the chain from there
on, and :func:`verify_audit_log` names the first entry that no longer fits. Appends from several processes
are serialised by an exclusive lock on ``<log>.lock``; an append with an ``event_key`` already in the log is
a no-op that returns the entry written the first time, so a retried task records its event once.

A writer that crashed mid-append leaves part of a line, without its newline, at the end: the next append
moves that fragment to ``<log>.torn`` (kept, never part of the chain) and cuts it off, and the retried
task writes its entry again; a whole entry that only lost its newline gets it back. Any other damage is
refused.

The chain alone cannot tell a log cut short, deleted, or rewritten with a recomputed chain from an intact
one, so the last entry's ``seq`` and ``hash`` (an :class:`AuditHead`) is also kept outside the file, by a
:class:`HeadAnchor` (the Airflow one is :mod:`prodigy_opentext.audit`): an append refuses a log that no
longer holds the anchored head, and :func:`verify_audit_log` checks a log against anchored heads.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from prodigy_opentext.exceptions import AuditAnchorMismatch, AuditLogError

GENESIS_HASH = "0" * 64

logger = logging.getLogger(__name__)


class AppendResult(NamedTuple):
    entry: dict[str, Any]
    appended: bool


@dataclass(frozen=True)
class AuditHead:
    """A log's last entry as kept outside the file: the log must still hold entry ``seq`` with ``hash``
    (the chain then fixes every entry before it). ``anchored_at``/``anchored_in`` say when and where it
    was kept, for the report."""

    seq: int
    hash: str
    anchored_at: str | None = None
    anchored_in: str | None = None

    def same_entry(self, other: AuditHead) -> bool:
        return (self.seq, self.hash) == (other.seq, other.hash)

    def describe(self) -> str:
        when = f" at {self.anchored_at}" if self.anchored_at else ""
        where = f" in {self.anchored_in}" if self.anchored_in else ""
        return f"entry {self.seq} (hash {self.hash[:12]}…) was anchored{when}{where}"


class HeadAnchor(Protocol):
    """Where one log's head is kept outside its file."""

    def anchored_head(self) -> AuditHead | None: ...

    def anchor(self, head: AuditHead) -> None: ...


@dataclass
class AuditVerification:
    """Outcome of a check: entries read, the first broken line (1-based) with the reason, or a log that
    ends before an anchored head (``broken_line`` None); ``anchored_seq``: the latest anchored head held."""

    valid: bool
    entries: int
    broken_line: int | None = None
    reason: str | None = None
    anchored_seq: int | None = None

    def __str__(self) -> str:
        if self.valid and self.anchored_seq is not None:
            return f"audit log intact: {self.entries} entries, head anchored at seq {self.anchored_seq}"
        if self.valid:
            return f"audit log intact: {self.entries} entries"
        if self.broken_line is None:
            return f"audit log cut short or replaced: {self.reason}"
        return f"audit log broken at entry {self.broken_line} (line {self.broken_line}): {self.reason}"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 of an entry's canonical JSON without its own ``hash``."""
    body = {key: value for key, value in entry.items() if key != "hash"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def _check_line(raw: bytes, line_no: int, prev_hash: str) -> dict[str, Any] | str:
    """Parse one line and check it extends the chain: the entry, or why the line does not."""
    if not raw.endswith(b"\n"):
        return "incomplete line (no newline): a torn write"
    try:
        entry = json.loads(raw)
    except ValueError as err:
        return f"not valid JSON ({err})"
    if not isinstance(entry, dict) or "hash" not in entry or "prev_hash" not in entry:
        return "not an audit entry (no hash/prev_hash)"
    if entry.get("seq") != line_no:
        return (
            f"the line holds entry {entry.get('seq')!r} where entry {line_no} belongs: an entry before it "
            "was removed, or entries were reordered"
        )
    if entry["prev_hash"] != prev_hash:
        return f"prev_hash {entry['prev_hash']!r} does not match the previous entry's hash {prev_hash!r}"
    if entry_hash(entry) != entry["hash"]:
        return "hash does not match the entry's content (the entry was edited)"
    return entry


def _read_lines(path: Path, offset: int = 0) -> Iterator[bytes]:
    with open(path, "rb") as log:
        log.seek(offset)
        yield from log


def verify_audit_log(path: str | os.PathLike, anchors: Iterable[AuditHead] = ()) -> AuditVerification:
    """Re-check the whole chain, and that the log still holds every anchored head; an absent log is a
    valid empty one only while no head was anchored."""
    path = Path(path)
    by_seq: dict[int, list[AuditHead]] = {}
    for head in anchors:
        by_seq.setdefault(head.seq, []).append(head)
    prev_hash = GENESIS_HASH
    line_no = 0
    for line_no, raw in enumerate(_read_lines(path) if path.exists() else (), start=1):
        entry = _check_line(raw, line_no, prev_hash)
        if isinstance(entry, str):
            return AuditVerification(valid=False, entries=line_no - 1, broken_line=line_no, reason=entry)
        for head in by_seq.get(line_no, ()):
            if head.hash != entry["hash"]:
                reason = (
                    f"entry {line_no} has hash {entry['hash'][:12]}… but {head.describe()}: the log was "
                    "rewritten"
                )
                return AuditVerification(valid=False, entries=line_no, broken_line=line_no, reason=reason)
        prev_hash = entry["hash"]
    if by_seq and max(by_seq) > line_no:
        latest = by_seq[max(by_seq)][0]
        held = f"the log ends at entry {line_no}" if path.exists() else "the log does not exist"
        return AuditVerification(valid=False, entries=line_no, reason=f"{held} but {latest.describe()}")
    return AuditVerification(valid=True, entries=line_no, anchored_seq=max(by_seq) if by_seq else None)


class AuditLog:
    """One audit log file. Safe to use from several processes at once (each with its own instance)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._offset = 0
        self._entries = 0
        self._last_hash = GENESIS_HASH
        self._by_event_key: dict[str, dict[str, Any]] = {}

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _catch_up(self) -> None:
        """Read (and check) what other writers appended since this instance last looked."""
        if not self.path.exists():
            if self._offset:
                raise AuditLogError(f"{self.path}: the log disappeared after {self._entries} entries")
            return
        size = self.path.stat().st_size
        if size < self._offset:
            raise AuditLogError(
                f"{self.path}: the log shrank to {size} bytes (was {self._offset}): truncated"
            )
        last_line = None
        for raw in _read_lines(self.path, self._offset):
            line_no = self._entries + 1
            entry = _check_line(raw, line_no, self._last_hash)
            if isinstance(entry, str) and not raw.endswith(b"\n"):  # only the last line can lack its newline
                last_line = raw
                break
            if isinstance(entry, str):
                raise AuditLogError(f"{self.path}: entry {line_no} (line {line_no}): {entry}")
            self._accept(entry, len(raw))
        if last_line is not None:
            self._repair_last_line(last_line)

    def _repair_last_line(self, last_line: bytes) -> None:
        """A last line without its newline: a crashed write's prefix (never a whole JSON object) is set
        aside; a whole entry gets its newline back; a whole object that breaks the chain is an edit."""
        try:
            json.loads(last_line)
        except ValueError:
            self._set_aside_torn_tail(last_line)
            return
        line_no = self._entries + 1
        entry = _check_line(last_line + b"\n", line_no, self._last_hash)
        if isinstance(entry, str):
            raise AuditLogError(f"{self.path}: entry {line_no} (line {line_no}): {entry}")
        self._write(b"\n")
        self._accept(entry, len(last_line) + 1)

    def _accept(self, entry: dict[str, Any], length: int) -> None:
        self._offset += length
        self._entries += 1
        self._last_hash = entry["hash"]
        if entry.get("event_key") is not None:
            self._by_event_key[entry["event_key"]] = entry

    def _write(self, data: bytes) -> None:
        with open(self.path, "ab") as log:
            log.write(data)
            log.flush()
            os.fsync(log.fileno())

    def _set_aside_torn_tail(self, torn: bytes) -> None:
        """Keep a crashed append's fragment in ``<log>.torn`` and cut it off the log (the lock is held)."""
        aside = self.path.with_name(self.path.name + ".torn")
        with open(aside, "ab") as out:
            out.write(torn + b"\n")
            out.flush()
            os.fsync(out.fileno())
        os.truncate(self.path, self._offset)
        logger.warning(
            "%s: a torn last line (%d bytes, from a crashed append) was moved to %s; the chain continues "
            "after entry %d",
            self.path,
            len(torn),
            aside,
            self._entries,
        )

    def append(
        self,
        actor: str,
        action: str,
        subject: str,
        details: dict[str, Any] | None = None,
        *,
        event_key: str | None = None,
        anchor: HeadAnchor | None = None,
    ) -> AppendResult:
        """Append one entry (``appended=False`` and the first entry when ``event_key`` was seen before).

        With an ``anchor``, a log that no longer holds the anchored head is refused before anything is
        written, and the head is anchored afterwards while the lock is held, so anchors never go back; a
        no-op anchors it too, for a retry whose first anchor failed after its entry was written.
        """
        with self._locked():
            self._catch_up()
            anchored = anchor.anchored_head() if anchor is not None else None
            if anchored is not None:
                self._check_holds(anchored)
            result = self._append_entry(actor, action, subject, details, event_key)
            head = AuditHead(self._entries, self._last_hash)
            if anchor is not None and (anchored is None or not anchored.same_entry(head)):
                anchor.anchor(head)
            return result

    def _check_holds(self, anchored: AuditHead) -> None:
        """Raise :class:`AuditAnchorMismatch` unless the log (caught up, lock held) holds ``anchored``."""
        if anchored.same_entry(AuditHead(self._entries, self._last_hash)):
            return
        verification = verify_audit_log(self.path, [anchored])
        if not verification.valid:
            raise AuditAnchorMismatch(f"{self.path}: {verification.reason}; nothing appended")

    def _append_entry(
        self,
        actor: str,
        action: str,
        subject: str,
        details: dict[str, Any] | None,
        event_key: str | None,
    ) -> AppendResult:
        if event_key is not None and event_key in self._by_event_key:
            return AppendResult(self._by_event_key[event_key], appended=False)
        entry = {
            "seq": self._entries + 1,
            "ts": datetime.now(UTC).isoformat(timespec="microseconds"),
            "actor": actor,
            "action": action,
            "subject": subject,
            "details": details or {},
            "event_key": event_key,
            "prev_hash": self._last_hash,
        }
        entry["hash"] = entry_hash(entry)
        line = (canonical_json(entry) + "\n").encode()
        self._write(line)
        self._accept(entry, len(line))
        return AppendResult(entry, appended=True)

    def find(self, event_key: str) -> dict[str, Any] | None:
        """The entry recorded under ``event_key``, if any (the chain is checked up to the end)."""
        with self._locked():
            self._catch_up()
            return self._by_event_key.get(event_key)

    def entries(self) -> Iterator[dict[str, Any]]:
        """The entries as written (unchecked; use :func:`verify_audit_log` to check the chain)."""
        if self.path.exists():
            for raw in _read_lines(self.path):
                yield json.loads(raw)
