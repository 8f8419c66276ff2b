"""Storage written the way Prodigy writes it, and the db-in / db-out / stats / drop commands."""

from __future__ import annotations

import json

import pytest

from sandbox.prodigy.__main__ import main
from sandbox.prodigy.db import connect
from sandbox.prodigy.errors import ProdigyError
from tests.fixtures.samples import SAMPLE_FILES


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_real_exports_round_trip_through_db_in_and_db_out(
    prodigy_home_any, prodigy_samples_dir, tmp_path, raw_sql
):
    for name in SAMPLE_FILES:
        dataset = name.removesuffix(".jsonl")
        assert main(["db-in", dataset, str(prodigy_samples_dir / name)]) == 0
        out = tmp_path / name
        assert main(["db-out", dataset, "--out", str(out)]) == 0
        assert read_jsonl(out) == read_jsonl(prodigy_samples_dir / name)
    stored = raw_sql(
        "SELECT e.input_hash, e.task_hash, e.content FROM example e JOIN link l ON l.example_id = e.id "
        "JOIN dataset d ON d.id = l.dataset_id WHERE d.name = 'textcat_docs_issues' ORDER BY l.id"
    )
    first = read_jsonl(prodigy_samples_dir / "textcat_docs_issues.jsonl")[0]
    assert stored[0][:2] == (first["_input_hash"], first["_task_hash"])
    assert json.loads(stored[0][2]) == first
    assert len(stored) == 661


def test_tables_have_prodigys_layout(prodigy_home_any, raw_sql, tmp_path):
    source = tmp_path / "rows.jsonl"
    source.write_text('{"text": "a", "answer": "accept"}\n')
    assert main(["db-in", "layout", str(source)]) == 0
    if json.loads((prodigy_home_any / "prodigy.json").read_text())["db"] == "sqlite":
        columns = {
            table: [(row[1], row[2]) for row in raw_sql(f"PRAGMA table_info({table})")]
            for table in ("dataset", "example", "link")
        }
        assert columns == {
            "dataset": [
                ("id", "INTEGER"),
                ("name", "VARCHAR(255)"),
                ("created", "INTEGER"),
                ("meta", "BLOB"),
                ("session", "INTEGER"),
            ],
            "example": [
                ("id", "INTEGER"),
                ("input_hash", "INTEGER"),
                ("task_hash", "INTEGER"),
                ("content", "BLOB"),
            ],
            "link": [("id", "INTEGER"), ("example_id", "INTEGER"), ("dataset_id", "INTEGER")],
        }
    else:
        rows = raw_sql(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
        )
        assert rows == [
            ("dataset", "id", "integer"),
            ("dataset", "name", "character varying"),
            ("dataset", "created", "integer"),
            ("dataset", "meta", "bytea"),
            ("dataset", "session", "boolean"),
            ("example", "id", "integer"),
            ("example", "input_hash", "bigint"),
            ("example", "task_hash", "bigint"),
            ("example", "content", "bytea"),
            ("link", "id", "integer"),
            ("link", "example_id", "integer"),
            ("link", "dataset_id", "integer"),
        ]
    datasets = raw_sql("SELECT name, created, meta, session FROM dataset ORDER BY id")
    assert (datasets[0][0], bool(datasets[0][3])) == ("layout", False)
    assert bool(datasets[1][3]) is True, "db-in links its rows to a session dataset too"
    assert all(isinstance(created, int) and created > 1_600_000_000 for _, created, _, _ in datasets)
    assert json.loads(datasets[0][2]) == {}


def test_db_in_hashes_rows_without_hashes_and_keeps_existing_ones(
    prodigy_home, run_prodigy, tmp_path, raw_sql
):
    source = tmp_path / "mixed.jsonl"
    rows = [
        {"text": "Nike shoes", "label": "BRAND"},
        {"text": "Nike shoes", "label": "PRODUCT", "answer": "reject"},
        {"text": "kept", "_input_hash": 11, "_task_hash": -12},
    ]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    run_prodigy("db-in", "mixed", source)
    exported = [json.loads(line) for line in run_prodigy("db-out", "mixed").stdout.splitlines()]
    assert [row["answer"] for row in exported] == ["accept", "reject", "accept"]
    first, second, kept = exported
    assert isinstance(first["_input_hash"], int) and first["_input_hash"] == second["_input_hash"]
    assert first["_task_hash"] != second["_task_hash"]
    assert (kept["_input_hash"], kept["_task_hash"]) == (11, -12)
    columns = raw_sql("SELECT input_hash, task_hash FROM example ORDER BY id")
    assert columns == [(row["_input_hash"], row["_task_hash"]) for row in exported]


def test_a_bad_line_is_reported_with_its_number_and_nothing_is_written(prodigy_home, run_prodigy, tmp_path):
    source = tmp_path / "broken.jsonl"
    source.write_text('{"text": "fine"}\n{"text": "also fine"}\n{"text": "cut off\n{"text": "never read"}\n')
    result = run_prodigy("db-in", "broken", source, check=False)
    assert result.returncode == 1
    assert f"{source}, line 3: not valid JSON" in result.stderr
    stats = json.loads(run_prodigy("stats").stdout)
    assert stats["datasets"] == [] and stats["sessions"] == []
    missing = run_prodigy("db-out", "broken", check=False)
    assert missing.returncode == 1 and "dataset 'broken' not found" in missing.stderr


@pytest.mark.parametrize("name", ["my data", "a,b", "tab\tname", ""])
def test_dataset_names_with_spaces_or_commas_are_rejected(prodigy_home, name, tmp_path, capsys):
    source = tmp_path / "rows.jsonl"
    source.write_text('{"text": "a"}\n')
    with connect() as db, pytest.raises(ProdigyError, match=r"invalid dataset name.*commas or spaces"):
        db.add_dataset(name)
    assert main(["db-in", name, str(source)]) == 1
    assert f"error: invalid dataset name {name!r}" in capsys.readouterr().err
    with connect() as db:
        assert db.datasets == [] and db.sessions == []


def test_add_examples_links_to_every_dataset_and_stats_and_drop_follow(prodigy_home_any, capsys):
    with connect() as db:
        db.add_dataset("reviews")
        db.add_dataset("reviews-alice", session=True)
        db.add_dataset("reviews-bob", session=True)
        answers = [{"text": f"t{n}", "answer": "accept", "flagged": n == 0} for n in range(3)]
        assert db.add_examples(answers, datasets=["reviews", "reviews-alice"]) == 3
        assert db.add_examples([{"text": "t0", "answer": "ignore"}], datasets=["reviews", "reviews-bob"]) == 1
        with pytest.raises(ProdigyError, match="dataset 'nope' not found"):
            db.add_examples([{"text": "x"}], datasets=["reviews", "nope"])
        assert db.count_dataset("reviews") == 4, "a failed add writes nothing"
        assert db.datasets == ["reviews"] and db.sessions == ["reviews-alice", "reviews-bob"]

    assert main(["stats", "reviews"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["annotations"] == 4
    assert stats["answers"] == {"accept": 3, "reject": 0, "ignore": 1}
    assert stats["flagged"] == 1
    assert stats["sessions"] == {"reviews-alice": 3, "reviews-bob": 1}

    assert main(["drop", "reviews-bob"]) == 0
    assert main(["drop", "reviews"]) == 0
    with connect() as db:
        assert "reviews" not in db and db.sessions == ["reviews-alice"]
        assert len(list(db.get_dataset_examples("reviews-alice"))) == 3, "examples still linked stay"
        assert db.Example.select().count() == 3, "examples nothing links any more are deleted"
    assert main(["drop", "reviews"]) == 1


def test_configuration_comes_from_prodigy_json_and_overrides(prodigy_home, monkeypatch, tmp_path):
    other = tmp_path / "elsewhere"
    overrides = {"db_settings": {"sqlite": {"name": "other.db", "path": str(other)}}}
    monkeypatch.setenv("PRODIGY_CONFIG_OVERRIDES", json.dumps(overrides))
    with connect() as db:
        db.add_dataset("moved")
        assert db.db_name == str(other / "other.db")
    assert (other / "other.db").exists() and not (prodigy_home / "prodigy.db").exists()

    monkeypatch.setenv("PRODIGY_CONFIG_OVERRIDES", '{"db": "mysql"}')
    with pytest.raises(ProdigyError, match=r"database 'mysql' in prodigy\.json is not supported"):
        connect()
    monkeypatch.setenv("PRODIGY_CONFIG_OVERRIDES", "[1]")
    with pytest.raises(ProdigyError, match="PRODIGY_CONFIG_OVERRIDES must be a JSON object"):
        connect()
    monkeypatch.delenv("PRODIGY_CONFIG_OVERRIDES")
    (prodigy_home / "prodigy.json").write_text("{not json")
    with pytest.raises(ProdigyError, match=r"prodigy\.json is not valid JSON"):
        connect()


def test_default_home_is_dot_prodigy_with_sqlite(monkeypatch, tmp_path):
    monkeypatch.delenv("PRODIGY_HOME", raising=False)
    monkeypatch.delenv("PRODIGY_CONFIG_OVERRIDES", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with connect() as db:
        assert (db.db_id, db.db_name) == ("sqlite", str(tmp_path / ".prodigy" / "prodigy.db"))
