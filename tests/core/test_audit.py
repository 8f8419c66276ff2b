"""The hash-chained audit log: appends, tamper detection, idempotency and concurrent writers."""

from __future__ import annotations

import itertools
import json
import multiprocessing
from pathlib import Path

import pytest

from prodigy_opentext.core.audit import GENESIS_HASH, AuditLog, entry_hash, verify_audit_log
from prodigy_opentext.exceptions import AuditLogError

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
    assert "prev_hash" in verification.reason


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
