"""The hash-chained audit log: appends, tamper detection, idempotency and concurrent writers."""

from __future__ import annotations

import itertools
import json
import multiprocessing
from pathlib import Path

import pytest

from prodigy_opentext.core.audit import (
    GENESIS_HASH,
    AuditHead,
    AuditLog,
    entry_hash,
    verify_audit_log,
)
from prodigy_opentext.exceptions import AuditAnchorMismatch, AuditLogError

WRITERS = 2
APPENDS_PER_WRITER = 60


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def rewrite(path: Path, entries: list[dict]) -> None:
    path.write_text("".join(json.dumps(entry) + "\n" for entry in entries))


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    log = AuditLog(tmp_path / "audit" / "governance.jsonl")
    log.append("airflow", "batch.submitted", "ner_news/v3", {"examples": 120})
    log.append("sme@example.com", "batch.approved", "ner_news/v3", {"process": "p-1"})
    log.append("airflow", "release.written", "ner_news/v3", {"sha256": "ab" * 32})
    return log.path


def test_entries_chain_to_each_other(log_path: Path) -> None:
    entries = lines(log_path)
    assert [entry["seq"] for entry in entries] == [1, 2, 3]
    assert entries[0]["prev_hash"] == GENESIS_HASH
    assert [entry["prev_hash"] for entry in entries[1:]] == [entry["hash"] for entry in entries[:-1]]
    assert all(entry["hash"] == entry_hash(entry) for entry in entries)
    assert entries[1]["actor"] == "sme@example.com" and entries[1]["details"] == {"process": "p-1"}
    verification = verify_audit_log(log_path)
    assert (verification.valid, verification.entries) == (True, 3)


def test_an_edited_entry_is_named(log_path: Path) -> None:
    entries = lines(log_path)
    entries[1]["details"]["process"] = "p-2"
    rewrite(log_path, entries)
    verification = verify_audit_log(log_path)
    assert (verification.valid, verification.broken_line) == (False, 2)
    assert "edited" in verification.reason
    assert "entry 2" in str(verification)


def test_a_removed_entry_breaks_the_chain_at_the_next_one(log_path: Path) -> None:
    entries = lines(log_path)
    rewrite(log_path, [entries[0], entries[2]])
    verification = verify_audit_log(log_path)
    assert (verification.valid, verification.broken_line, verification.entries) == (False, 2, 1)
    assert "holds entry 3 where entry 2 belongs" in verification.reason


def test_a_rehashed_forgery_still_breaks_the_link_to_the_next_entry(log_path: Path) -> None:
    entries = lines(log_path)
    entries[0]["actor"] = "someone-else"
    entries[0]["hash"] = entry_hash(entries[0])
    rewrite(log_path, entries)
    assert verify_audit_log(log_path).broken_line == 2


def test_a_torn_last_line_is_reported_then_set_aside_by_the_next_append(log_path: Path) -> None:
    fragment = '{"seq": 4, "actor": "air'
    with open(log_path, "a") as log:
        log.write(fragment)
    verification = verify_audit_log(log_path)
    assert (verification.valid, verification.broken_line) == (False, 4)
    assert "torn" in verification.reason

    entry, appended = AuditLog(log_path).append("airflow", "release.written", "ner_news/v4")
    assert appended and entry["seq"] == 4
    assert verify_audit_log(log_path).valid and [e["seq"] for e in lines(log_path)] == [1, 2, 3, 4]
    assert (log_path.parent / "governance.jsonl.torn").read_text() == fragment + "\n"


def test_a_whole_last_entry_that_lost_only_its_newline_is_kept(log_path: Path) -> None:
    log_path.write_bytes(log_path.read_bytes().removesuffix(b"\n"))
    entry, appended = AuditLog(log_path).append("airflow", "release.written", "ner_news/v4")
    assert appended and entry["seq"] == 4
    assert verify_audit_log(log_path).valid and [e["seq"] for e in lines(log_path)] == [1, 2, 3, 4]
    assert not (log_path.parent / "governance.jsonl.torn").exists()


def test_an_edited_last_entry_without_its_newline_is_refused_not_set_aside(log_path: Path) -> None:
    entries = lines(log_path)
    entries[2]["subject"] = "ner_news/v9"
    log_path.write_text("".join(json.dumps(entry) + "\n" for entry in entries).removesuffix("\n"))
    with pytest.raises(AuditLogError, match="entry 3"):
        AuditLog(log_path).append("airflow", "release.written", "ner_news/v4")
    assert not (log_path.parent / "governance.jsonl.torn").exists()


def test_a_damaged_line_before_the_end_is_not_taken_for_a_torn_one(log_path: Path) -> None:
    text = log_path.read_text().splitlines(keepends=True)
    log_path.write_text(text[0] + text[1][:20] + text[2])
    with pytest.raises(AuditLogError, match="entry 2"):
        AuditLog(log_path).append("airflow", "release.written", "ner_news/v4")
    assert not (log_path.parent / "governance.jsonl.torn").exists()


def test_appending_to_a_tampered_log_is_refused(log_path: Path) -> None:
    entries = lines(log_path)
    entries[0]["subject"] = "ner_news/v2"
    rewrite(log_path, entries)
    with pytest.raises(AuditLogError, match="entry 1"):
        AuditLog(log_path).append("airflow", "batch.submitted", "ner_news/v4")


def test_an_event_key_is_recorded_once_across_instances(log_path: Path) -> None:
    first = AuditLog(log_path).append(
        "airflow", "batch.approved", "ner_news/v4", event_key="approve:ner_news:v4"
    )
    again = AuditLog(log_path).append(
        "airflow", "batch.approved", "ner_news/v4", event_key="approve:ner_news:v4"
    )
    assert first.appended and not again.appended
    assert again.entry == first.entry
    assert len(lines(log_path)) == 4
    assert verify_audit_log(log_path).valid


def test_an_absent_log_is_valid_and_empty(tmp_path: Path) -> None:
    verification = verify_audit_log(tmp_path / "none.jsonl")
    assert (verification.valid, verification.entries) == (True, 0)


class RememberedHead:
    """A :class:`~prodigy_opentext.core.audit.HeadAnchor` in memory; ``fail_next`` makes one anchor fail."""

    def __init__(self) -> None:
        self.head: AuditHead | None = None
        self.writes = 0
        self.fail_next = False

    def anchored_head(self) -> AuditHead | None:
        return self.head

    def anchor(self, head: AuditHead) -> None:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("metadata database unreachable")
        self.head = AuditHead(head.seq, head.hash, "2026-12-02T10:00:00+00:00", "the test's memory")
        self.writes += 1


def anchored(path: Path, seq: int) -> AuditHead:
    """Entry ``seq`` of the log as anchored before anyone touched the file."""
    return AuditHead(seq, lines(path)[seq - 1]["hash"], "2026-12-02T10:00:00+00:00", "Airflow Variable x")


def test_an_intact_log_holds_its_anchored_head(log_path: Path) -> None:
    verification = verify_audit_log(log_path, [anchored(log_path, 3)])
    assert (verification.valid, verification.anchored_seq) == (True, 3)
    assert str(verification) == "audit log intact: 3 entries, head anchored at seq 3"
    older = verify_audit_log(log_path, [anchored(log_path, 2)])
    assert (older.valid, older.anchored_seq) == (True, 2), "entries after the anchored head are allowed"


def test_entries_cut_off_the_end_are_named_against_the_anchored_head(log_path: Path) -> None:
    """Before: a log that lost its last entries passed every check."""
    head = anchored(log_path, 3)
    log_path.write_text("".join(log_path.read_text().splitlines(keepends=True)[:2]))
    assert verify_audit_log(log_path).valid, "the chain alone cannot tell"
    verification = verify_audit_log(log_path, [head])
    assert (verification.valid, verification.entries) == (False, 2)
    assert verification.reason == (
        f"the log ends at entry 2 but entry 3 (hash {head.hash[:12]}…) was anchored at "
        "2026-12-02T10:00:00+00:00 in Airflow Variable x"
    )
    assert str(verification).startswith("audit log cut short or replaced: the log ends at entry 2")


def test_a_deleted_or_emptied_log_is_named_against_the_anchored_head(log_path: Path) -> None:
    head = anchored(log_path, 3)
    log_path.write_text("")
    assert "the log ends at entry 0 but entry 3" in verify_audit_log(log_path, [head]).reason
    log_path.unlink()
    verification = verify_audit_log(log_path, [head])
    assert not verification.valid
    assert verification.reason.startswith("the log does not exist but entry 3")


def test_a_rewrite_with_a_recomputed_chain_is_named_at_the_anchored_entry(log_path: Path) -> None:
    """Before: a log rewritten from scratch, every hash recomputed, passed as intact."""
    first, head = anchored(log_path, 1), anchored(log_path, 3)
    forged = AuditLog(log_path.with_name("forged.jsonl"))
    for subject in ("ner_news/v3", "ner_news/v3", "ner_news/v4"):
        forged.append("airflow", "batch.approved", subject)
    forged.path.replace(log_path)
    assert verify_audit_log(log_path).valid, "the chain alone cannot tell"
    verification = verify_audit_log(log_path, [head, first])
    assert (verification.valid, verification.broken_line) == (False, 1)
    assert "but entry 1" in verification.reason and verification.reason.endswith("the log was rewritten")
    assert not verify_audit_log(log_path, [head]).valid


def test_appends_anchor_the_head_and_a_no_op_anchors_nothing_new(log_path: Path) -> None:
    remembered = RememberedHead()
    entry, _ = AuditLog(log_path).append(
        "airflow", "release.written", "v4", event_key="v4", anchor=remembered
    )
    assert remembered.head is not None
    assert (remembered.head.seq, remembered.head.hash) == (4, entry["hash"])
    AuditLog(log_path).append("airflow", "release.written", "v4", event_key="v4", anchor=remembered)
    assert remembered.writes == 1


def test_a_retry_anchors_what_a_failed_anchor_left_unanchored(log_path: Path) -> None:
    remembered = RememberedHead()
    remembered.fail_next = True
    with pytest.raises(ConnectionError):
        AuditLog(log_path).append("airflow", "release.written", "v4", event_key="v4", anchor=remembered)
    assert len(lines(log_path)) == 4, "the entry stays"
    again = AuditLog(log_path).append("airflow", "release.written", "v4", event_key="v4", anchor=remembered)
    assert not again.appended
    assert remembered.head is not None and remembered.head.seq == 4


@pytest.mark.parametrize("damage", ["cut short", "deleted", "rewritten"])
def test_a_log_that_lost_its_anchored_head_is_not_appended_to(log_path: Path, damage: str) -> None:
    """Before: the next append after a deletion started a new chain at entry 1, and nothing noticed."""
    remembered = RememberedHead()
    AuditLog(log_path).append("airflow", "release.written", "v4", anchor=remembered)
    before = log_path.read_text().splitlines(keepends=True)
    if damage == "cut short":
        log_path.write_text("".join(before[:3]))
    elif damage == "deleted":
        log_path.unlink()
    else:
        forged = AuditLog(log_path.with_name("forged.jsonl"))
        for n in range(4):
            forged.append("airflow", "batch.approved", f"v{n}")
        forged.path.replace(log_path)
    left = log_path.read_text() if log_path.exists() else None
    with pytest.raises(AuditAnchorMismatch, match=r"entry 4 .* was anchored .*nothing appended"):
        AuditLog(log_path).append("airflow", "release.written", "v5", anchor=remembered)
    assert (log_path.read_text() if log_path.exists() else None) == left
    assert remembered.head is not None and remembered.head.seq == 4, "the anchor keeps what was lost"


def append_many(path: str, writer: int, start) -> None:
    log = AuditLog(path)
    start.wait(60)
    for i in range(APPENDS_PER_WRITER):
        log.append(f"worker-{writer}", "example.reviewed", f"task-{i}", {"writer": writer, "i": i})


def test_two_processes_appending_at_once_keep_one_unbroken_chain(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(WRITERS)
    writers = [context.Process(target=append_many, args=(str(path), n, start)) for n in range(WRITERS)]
    try:
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(120)
            assert writer.exitcode == 0
    finally:
        for writer in writers:
            if writer.is_alive():
                writer.kill()
                writer.join()
    verification = verify_audit_log(path)
    assert (verification.valid, verification.entries) == (True, WRITERS * APPENDS_PER_WRITER)
    order = [(entry["details"]["writer"], entry["details"]["i"]) for entry in lines(path)]
    assert len(set(order)) == WRITERS * APPENDS_PER_WRITER
    switches = sum(1 for before, after in itertools.pairwise(order) if before[0] != after[0])
    assert switches > 1, "the writers never overlapped, so the lock was not exercised"
