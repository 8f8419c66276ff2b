"""Contract tests: ProdigyHook against databases the Prodigy sandbox wrote (SQLite and PostgreSQL).

The sandbox writes with its own peewee models and serves annotators over HTTP; the hook must read back
exactly what it wrote, and what the hook writes must read back through the sandbox.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from prodigy_opentext.core.records import AnnotationProgress
from prodigy_opentext.exceptions import DatasetNotFoundError, InvalidRecord, ProdigyDatabaseError
from prodigy_opentext.hooks.prodigy import ProdigyHook
from tests.fixtures.samples import SAMPLES_DIR as SAMPLES
from tests.hooks import prodigy_support as support
from tests.hooks.prodigy_support import (
    SAMPLE_NAMES,
    execute_sql,
    read_jsonl,
    sample_rows,
    set_connection,
    write_jsonl,
)

prodigy_conn = support.prodigy_conn
prodigy_sqlite_conn = support.prodigy_sqlite_conn
closed_port = support.closed_port


def jsonl_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_sample_files_round_trip_from_db_in_to_export(prodigy_conn, run_prodigy, tmp_path):
    hook = ProdigyHook()
    for name in SAMPLE_NAMES:
        run_prodigy("db-in", name, SAMPLES / f"{name}.jsonl")
    assert [dataset["name"] for dataset in hook.list_datasets()] == sorted(SAMPLE_NAMES)
    for name in SAMPLE_NAMES:
        expected = sample_rows(name)
        output = tmp_path / f"{name}.jsonl"
        manifest = hook.export_jsonl(name, output)
        assert read_jsonl(output) == expected
        assert list(hook.iter_examples(name)) == expected
        assert manifest["rows"] == manifest["read"] == len(expected)
        assert manifest["quarantined"] == 0 and manifest["quarantine_path"] is None
        assert manifest["sha256"] == hashlib.sha256(output.read_bytes()).hexdigest()
        assert manifest["by_answer"] == dict(sorted(Counter(row["answer"] for row in expected).items()))
        ids = [example_id for example_id, _ in hook.iter_rows(name)]
        assert ids == sorted(ids) and (manifest["first_example_id"], manifest["last_example_id"]) == (
            ids[0],
            ids[-1],
        )
        # db-in names its session by the second, as Prodigy does: imports in the same second share one,
        # so compare the dataset's own answers per session, not the session datasets' totals.
        stats = json.loads(run_prodigy("stats", name).stdout)
        answers_by_session = {
            session: sum(1 for _ in hook.iter_rows(name, session=session)) for session in stats["sessions"]
        }
        assert stats["sessions"] and answers_by_session == stats["sessions"]


def test_answers_given_over_http_are_read_back_exactly(prodigy_conn, prodigy_server, run_prodigy, tmp_path):
    tasks = [
        {"text": row["text"], "meta": row["meta"], "label": "DOCUMENTATION"}
        for row in sample_rows("textcat_docs_issues", 12)
    ]
    url = prodigy_server("issues", write_jsonl(tmp_path / "tasks.jsonl", tasks), feed_overlap=True)
    run_prodigy(
        "annotate", "--url", url, "--dataset", "issues", "--sessions", "alice,bob,carol", "--seed", "7"
    )

    hook = ProdigyHook()
    stored = jsonl_lines(run_prodigy("db-out", "issues").stdout)
    examples = list(hook.iter_examples("issues"))
    assert examples == stored and len(examples) == 36
    columns = execute_sql(prodigy_conn, "SELECT id, input_hash, task_hash FROM example ORDER BY id")
    assert [(input_hash, task_hash) for _, input_hash, task_hash in columns] == [
        (task["_input_hash"], task["_task_hash"]) for task in examples
    ]

    stats = json.loads(run_prodigy("stats", "issues").stdout)
    assert stats["sessions"] == {"issues-alice": 12, "issues-bob": 12, "issues-carol": 12}
    assert {row["name"]: row["examples"] for row in hook.list_datasets(session=True)} == stats["sessions"]
    for session in stats["sessions"]:
        answers = list(hook.iter_examples("issues", session=session))
        assert {task["_annotator_id"] for task in answers} == {session}
        assert answers == [task for task in stored if task["_session_id"] == session]

    progress = hook.annotator_progress("issues")
    assert progress["answers"] == stats["annotations"] == 36
    assert progress["by_answer"] == {answer: count for answer, count in stats["answers"].items() if count}
    assert {name: counts["answers"] for name, counts in progress["annotators"].items()} == stats["sessions"]
    assert progress["inputs"] == 12 and progress["inputs_by_annotator_count"] == {"3": 12}
    assert hook.batch_counts("issues", annotators_per_input=3) == {
        "dataset": "issues",
        "answers": 36,
        "inputs": 12,
        "inputs_done": 12,
        "annotators": 3,
        "invalid": 0,
    }


def test_examples_the_hook_adds_read_back_through_prodigy(prodigy_conn, run_prodigy):
    hook = ProdigyHook()
    tasks = sample_rows("ner_manual_food", 3)
    alice = [dict(task, _session_id="food-alice", _annotator_id="food-alice") for task in tasks]
    bob = [dict(task, _session_id="food-bob", _annotator_id="food-bob", answer="reject") for task in tasks]
    assert hook.add_dataset("food", {"request": "REQ-7"}) is True
    assert hook.add_dataset("food", {"request": "other"}) is False
    assert hook.add_examples("food", alice + bob) == {"added": 6, "skipped": 0}
    assert hook.add_examples("food", [*alice, bob[0]]) == {"added": 0, "skipped": 4}
    carol = dict(tasks[0], answer="ignore", _annotator_id="food-carol")
    assert hook.add_examples("food", [carol], session="food-carol") == {"added": 1, "skipped": 0}

    assert jsonl_lines(run_prodigy("db-out", "food").stdout) == [*alice, *bob, carol]
    stats = json.loads(run_prodigy("stats", "food").stdout)
    assert stats["annotations"] == 7
    assert stats["sessions"] == {"food-alice": 3, "food-bob": 3, "food-carol": 1}
    assert stats["meta"]["request"] == "REQ-7"


def task_hash_indexes(hook: ProdigyHook) -> list[list[str]]:
    import sqlalchemy as sa

    with hook.get_conn().connect() as conn:
        indexes = sa.inspect(conn).get_indexes("example")
    return [index["column_names"] for index in indexes if index["column_names"] == ["task_hash"]]


def test_a_dataset_written_case_by_case_is_indexed_by_task_hash_and_a_rerun_adds_nothing(
    prodigy_conn, run_prodigy
):
    """Prodigy's own tables have no index on example(task_hash): the hook's first write adds it, once,
    so a dataset written in small batches finds its stored examples by hash, not by reading itself."""
    run_prodigy("db-in", "issues", SAMPLES / "textcat_docs_issues.jsonl")
    answers = [
        dict(row, _session_id="issues-dana", _annotator_id="issues-dana")
        for row in sample_rows("textcat_docs_issues", 9)
    ]
    hook = ProdigyHook()
    assert task_hash_indexes(hook) == []
    for start in range(0, 9, 3):
        assert ProdigyHook().add_examples("issues_adjudicated", answers[start : start + 3]) == {
            "added": 3,
            "skipped": 0,
        }
    assert task_hash_indexes(hook) == [["task_hash"]]
    again = ProdigyHook()
    assert again.add_examples("issues_adjudicated", answers) == {"added": 0, "skipped": 9}
    assert again.add_examples("issues", answers[:2]) == {"added": 2, "skipped": 0}, "another dataset's own"
    assert task_hash_indexes(hook) == [["task_hash"]]
    assert jsonl_lines(run_prodigy("db-out", "issues_adjudicated").stdout) == answers


def test_a_database_that_refuses_the_index_is_written_without_it_just_as_once(
    prodigy_conn, run_prodigy, monkeypatch, capsys
):
    import sqlalchemy as sa

    def refused(index: sa.Index, bind: sa.Connection, checkfirst: bool = False) -> None:
        raise sa.exc.ProgrammingError("CREATE INDEX", {}, Exception("permission denied for table example"))

    run_prodigy("db-in", "issues", SAMPLES / "textcat_docs_issues.jsonl")
    monkeypatch.setattr(sa.Index, "create", refused)
    answers = [
        dict(row, _session_id="issues-dana", _annotator_id="issues-dana")
        for row in sample_rows("textcat_docs_issues", 4)
    ]
    assert ProdigyHook().add_examples("issues_adjudicated", answers[:2]) == {"added": 2, "skipped": 0}
    assert ProdigyHook().add_examples("issues_adjudicated", answers) == {"added": 2, "skipped": 2}
    logged = capsys.readouterr().out
    assert "refused the index ix_example_task_hash (permission denied for table example)" in logged
    assert task_hash_indexes(ProdigyHook()) == []
    assert ProdigyHook().count("issues_adjudicated") == 4


def test_tasks_without_answers_are_kept_once_per_task_hash(prodigy_conn):
    hook = ProdigyHook()
    tasks = [
        {key: row[key] for key in ("text", "_input_hash", "_task_hash")}
        for row in sample_rows("ner_fashion_brands", 4)
    ]
    assert hook.add_examples("stream", tasks + tasks[:2]) == {"added": 4, "skipped": 2}
    assert hook.count("stream") == 4
    with pytest.raises(InvalidRecord, match="example 1: field '_task_hash': missing"):
        hook.add_examples("stream", [tasks[0], {"text": "no hashes", "_input_hash": 1}])
    assert hook.count("stream") == 4


def test_meta_counts_filters_and_incremental_reads(prodigy_conn, run_prodigy, tmp_path):
    run_prodigy("db-in", "issues", SAMPLES / "textcat_docs_issues.jsonl")
    expected = sample_rows("textcat_docs_issues")
    hook = ProdigyHook()
    assert hook.set_meta("issues", {"review": "pending"}) == {"review": "pending"}
    hook.set_meta("issues", {"review": "approved", "approver": "qa@example.com"})
    assert hook.get_meta("issues") == {"review": "approved", "approver": "qa@example.com"}
    assert json.loads(run_prodigy("stats", "issues").stdout)["meta"]["approver"] == "qa@example.com"
    (listed,) = hook.list_datasets()
    assert listed["examples"] == 661 and listed["meta"]["review"] == "approved" and listed["created"] > 0
    assert listed["session"] is False

    assert hook.count("issues") == 661
    assert hook.count("issues", answer="reject") == 460
    assert list(hook.iter_examples("issues", answer="accept")) == [
        row for row in expected if row["answer"] == "accept"
    ]
    assert list(hook.iter_examples("issues", batch_size=7)) == expected
    ids = [example_id for example_id, _ in hook.iter_rows("issues")]
    assert list(hook.iter_examples("issues", since_id=ids[300])) == expected[301:]
    assert list(hook.iter_examples("issues", since_id=ids[100], until_id=ids[200])) == expected[101:201]
    assert hook.last_example_id("issues") == ids[-1]
    batch = hook.export_jsonl("issues", tmp_path / "batch.jsonl", until_id=ids[99])
    assert (batch["rows"], batch["last_example_id"], batch["filters"]["until_id"]) == (100, ids[99], ids[99])
    hook.add_dataset("empty")
    assert hook.last_example_id("empty") is None
    ok, message = hook.test_connection()
    assert ok and "1 datasets" not in message and "datasets" in message


def test_damaged_rows_are_quarantined_named_and_nothing_else_lost(prodigy_conn, run_prodigy, tmp_path):
    run_prodigy("db-in", "issues", SAMPLES / "textcat_docs_issues.jsonl")
    expected = sample_rows("textcat_docs_issues")
    hook = ProdigyHook()
    ids = [example_id for example_id, _ in hook.iter_rows("issues")]
    corrupt_id, unhashed_id = ids[10], ids[20]
    execute_sql(
        prodigy_conn, "UPDATE example SET content = ? WHERE id = ?", (b'{"text": "cut off', corrupt_id)
    )
    unhashed = {key: value for key, value in expected[20].items() if key != "_task_hash"}
    execute_sql(
        prodigy_conn,
        "UPDATE example SET content = ? WHERE id = ?",
        (json.dumps(unhashed).encode(), unhashed_id),
    )

    output = tmp_path / "release" / "issues.jsonl"
    manifest = hook.export_jsonl("issues", output)
    assert (manifest["read"], manifest["rows"], manifest["quarantined"]) == (661, 659, 2)
    assert read_jsonl(output) == [row for number, row in enumerate(expected) if number not in (10, 20)]
    quarantined = read_jsonl(Path(manifest["quarantine_path"]))
    assert [(row["example_id"], row["field"]) for row in quarantined] == [
        (corrupt_id, "content"),
        (unhashed_id, "_task_hash"),
    ]
    assert quarantined[0]["content"] == '{"text": "cut off'
    assert json.loads(quarantined[1]["content"]) == unhashed
    assert f"example id {corrupt_id}" in quarantined[0]["error"]

    with pytest.raises(InvalidRecord, match=f"example id {corrupt_id}: field 'content': not valid JSON"):
        list(hook.iter_examples("issues"))
    progress = hook.annotator_progress("issues")
    assert progress["answers"] == 659 and progress["invalid_rows"] == [corrupt_id, unhashed_id]


@pytest.mark.parametrize("name", ["my dataset", "a,b", ""])
def test_dataset_names_with_spaces_or_commas_are_refused(prodigy_sqlite_conn, tmp_path, name):
    hook = ProdigyHook()
    calls = [
        lambda: hook.count(name),
        lambda: hook.add_dataset(name),
        lambda: hook.add_examples(name, []),
        lambda: list(hook.iter_examples(name)),
        lambda: hook.export_jsonl(name, tmp_path / "out.jsonl"),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=re.escape(repr(name))):
            call()
    assert not (tmp_path / "out.jsonl").exists()


def test_unknown_dataset_is_named(prodigy_sqlite_conn, run_prodigy):
    run_prodigy("db-in", "issues", SAMPLES / "textcat_docs_issues.jsonl")
    with pytest.raises(DatasetNotFoundError, match="dataset 'isues' not found in Prodigy's SQLite database"):
        ProdigyHook().count("isues")


def test_unreachable_postgres_is_named_by_host(monkeypatch, closed_port):
    connection = {"conn_type": "prodigy", "host": "127.0.0.1", "port": closed_port, "schema": "prodigy"}
    set_connection(
        monkeypatch, "prodigy_down", {**connection, "login": "postgres", "extra": {"db": "postgresql"}}
    )
    hook = ProdigyHook("prodigy_down")
    with pytest.raises(ProdigyDatabaseError, match=f"'prodigy' at 127.0.0.1:{closed_port}"):
        hook.list_datasets()
    ok, message = hook.test_connection()
    assert not ok and f"127.0.0.1:{closed_port}" in message


def test_missing_sqlite_database_is_named_by_path(monkeypatch, tmp_path):
    settings = {"sqlite": {"name": "prodigy.db", "path": str(tmp_path / "nowhere")}}
    set_connection(
        monkeypatch,
        "prodigy_missing",
        {"conn_type": "prodigy", "extra": {"db": "sqlite", "db_settings": settings}},
    )
    hook = ProdigyHook("prodigy_missing")
    with pytest.raises(ProdigyDatabaseError, match=re.escape(str(tmp_path / "nowhere" / "prodigy.db"))):
        hook.count("issues")
    assert not (tmp_path / "nowhere").exists()


def test_connection_fields_reach_postgres_without_prodigy_json(
    prodigy_home_postgres, postgres_url, run_prodigy, monkeypatch
):
    run_prodigy("db-in", "issues", SAMPLES / "textcat_docs_issues.jsonl")
    parts = urlsplit(postgres_url)
    fields = {
        "host": parts.hostname,
        "port": parts.port or 5432,
        "login": parts.username,
        "schema": parts.path[1:],
    }
    if parts.password:
        fields["password"] = parts.password
    set_connection(monkeypatch, "prodigy_fields", {"conn_type": "prodigy", **fields})
    hook = ProdigyHook("prodigy_fields")
    ok, message = hook.test_connection()
    assert ok and f"PostgreSQL database {parts.path[1:]!r}" in message
    assert hook.count("issues") == 661


def test_batch_counts_continue_from_the_last_read_and_start_over_when_the_dataset_changed(
    prodigy_conn, run_prodigy, monkeypatch
):
    def answers(annotator: str, count: int, start: int = 0) -> list[dict]:
        return [
            dict(task, answer="accept", _annotator_id=f"issues-{annotator}", _session_id=f"{annotator}-1")
            for task in sample_rows("textcat_docs_issues", start + count)[start:]
        ]

    hook = ProdigyHook()
    read: list[int | None] = []
    iter_rows = ProdigyHook.iter_rows

    def counting_iter_rows(self, dataset, **filters):
        read.append(filters.get("since_id"))
        yield from iter_rows(self, dataset, **filters)

    def incremental_equals_full(progress: AnnotationProgress) -> dict:
        counts = hook.batch_counts("issues", annotators_per_input=2, progress=progress)
        assert counts == hook.batch_counts("issues", annotators_per_input=2), "differs from a full read"
        return counts

    monkeypatch.setattr(ProdigyHook, "iter_rows", counting_iter_rows)
    hook.add_examples("other", answers("dave", 2, start=20))  # lower example ids, in another dataset
    progress = AnnotationProgress()
    hook.add_examples("issues", answers("alice", 5))
    first = incremental_equals_full(progress)
    assert (first["answers"], first["inputs"], first["inputs_done"]) == (5, 5, 0)
    last_read = progress.last_example_id

    read.clear()
    hook.add_examples("issues", answers("bob", 3))
    second = incremental_equals_full(progress)
    assert (second["answers"], second["inputs_done"], second["annotators"]) == (8, 3, 2)
    assert read[0] == last_read, "the poll read the whole dataset again"

    # An answer committed late, with an id below the last one read (PostgreSQL sequences allow it).
    (issues_id,) = execute_sql(prodigy_conn, "SELECT id FROM dataset WHERE name = 'issues'")[0]
    (other_example,) = execute_sql(prodigy_conn, "SELECT MIN(example_id) FROM link")[0]
    late_link = "INSERT INTO link (example_id, dataset_id) VALUES (?, ?)"
    execute_sql(prodigy_conn, late_link, (other_example, issues_id))
    assert incremental_equals_full(progress)["annotators"] == 3

    run_prodigy("drop", "issues")
    hook.add_examples("issues", answers("carol", 9))  # more rows than were read, possibly reusing ids
    third = incremental_equals_full(progress)
    assert (third["answers"], third["inputs"], third["annotators"]) == (9, 9, 1)


def test_batch_counts_see_rows_replaced_under_reused_ids_and_stay_incremental_with_double_links(
    prodigy_sqlite_conn, monkeypatch
):
    def answers(annotator: str, count: int, start: int = 0) -> list[dict]:
        return [
            dict(task, answer="accept", _annotator_id=f"issues-{annotator}", _session_id=f"{annotator}-1")
            for task in sample_rows("textcat_docs_issues", start + count)[start:]
        ]

    hook = ProdigyHook()
    progress = AnnotationProgress()
    hook.add_examples("issues", answers("alice", 4))
    assert hook.batch_counts("issues", 2, progress)["annotators"] == 1
    # The dataset's rows deleted and as many new ones stored: SQLite gives them the same ids.
    execute_sql(prodigy_sqlite_conn, "DELETE FROM link")
    execute_sql(prodigy_sqlite_conn, "DELETE FROM example")
    hook.add_examples("issues", answers("bob", 2) + answers("carol", 2, start=1))
    assert execute_sql(prodigy_sqlite_conn, "SELECT MAX(id) FROM example")[0][0] == progress.last_example_id
    replaced = hook.batch_counts("issues", 2, progress)
    assert replaced == hook.batch_counts("issues", 2)
    assert (replaced["inputs"], replaced["inputs_done"], replaced["annotators"]) == (3, 1, 2)

    # Each answer linked twice to the dataset (its own name as the session): polls still read only new rows.
    hook.add_examples("doubled", answers("dave", 3), session="doubled")
    doubled = AnnotationProgress()
    hook.batch_counts("doubled", 2, doubled)
    since: list[int | None] = []
    iter_rows = ProdigyHook.iter_rows

    def recording_iter_rows(self, dataset, **filters):
        since.append(filters.get("since_id"))
        yield from iter_rows(self, dataset, **filters)

    monkeypatch.setattr(ProdigyHook, "iter_rows", recording_iter_rows)
    hook.add_examples("doubled", answers("erin", 3), session="doubled")
    assert hook.batch_counts("doubled", 2, doubled)["inputs_done"] == 3
    assert since == [doubled.last_example_id - 3], "a doubly linked dataset was read whole again"
