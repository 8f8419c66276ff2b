"""Immutable versioned releases: manifest, idempotent reruns, conflicts and checksum verification."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from prodigy_opentext.core.release import MANIFEST_NAME, release_path, verify_release, write_release
from prodigy_opentext.exceptions import (
    InvalidRecord,
    ReleaseConflict,
    ReleaseCorrupt,
    UnsafeName,
)

APPROVALS = [{"outcome": "approved", "approver": "sme@example.com", "decided_at": "2025-03-01T10:00:00+0000"}]


def example(i: int, label: str, answer: str = "accept", annotator: str = "ner_news-ann") -> dict:
    return {
        "text": f"Acme {i}",
        "spans": [{"start": 0, "end": 4, "label": label}],
        "answer": answer,
        "_input_hash": i,
        "_task_hash": 1000 + i,
        "_annotator_id": annotator,
    }


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    source = tmp_path / "export"
    source.mkdir()
    rows = [example(1, "ORG"), example(2, "ORG", "reject"), example(3, "PERSON", annotator="ner_news-bob")]
    (source / "examples.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (source / "validation.json").write_text('{"success": true}\n')
    return source


def release(root: Path, data_dir: Path, **overrides):
    options = {
        "attachments": [data_dir / "validation.json"],
        "validation": {"success": True, "statistics": {"evaluated": 14, "failed": 0}},
        "approvals": APPROVALS,
        "source_dataset": "ner_news",
        "sessions": ["ner_news-bob", "ner_news-ann", "ner_news-ann"],
        "run_id": "manual__2025-03-01",
    }
    return write_release(root, "ner_news", "v3", [data_dir / "examples.jsonl"], **{**options, **overrides})


def test_a_release_holds_its_files_and_a_manifest_describing_them(tmp_path: Path, data_dir: Path) -> None:
    result = release(tmp_path / "store", data_dir)
    assert not result.already_released
    assert result.path == tmp_path / "store" / "releases" / "ner_news" / "v3"
    manifest = json.loads((result.path / MANIFEST_NAME).read_text())
    assert manifest == result.manifest
    data = (data_dir / "examples.jsonl").read_bytes()
    assert manifest["files"]["examples.jsonl"] == {
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "rows": 3,
        "kind": "data",
    }
    assert manifest["files"]["validation.json"]["kind"] == "attachment"
    assert manifest["counts"] == {
        "examples": 3,
        "by_answer": {"accept": 2, "reject": 1},
        "by_annotator": {"ner_news-ann": 2, "ner_news-bob": 1},
    }
    assert manifest["label_distribution"] == {"ORG": 2, "PERSON": 1}
    assert manifest["source"] == {"dataset": "ner_news", "sessions": ["ner_news-ann", "ner_news-bob"]}
    assert manifest["approvals"] == APPROVALS
    assert manifest["validation"]["statistics"]["evaluated"] == 14
    assert manifest["run_id"] == "manual__2025-03-01" and manifest["created"]
    assert (result.path / "examples.jsonl").read_bytes() == data
    assert (result.path / "examples.jsonl").stat().st_mode & 0o222 == 0
    assert sorted(p.name for p in result.path.parent.iterdir()) == ["v3"]  # no stage left behind
    assert verify_release(result.path) == manifest


def test_rerunning_the_same_release_is_a_no_op(tmp_path: Path, data_dir: Path) -> None:
    first = release(tmp_path, data_dir)
    again = release(tmp_path, data_dir, run_id="scheduled__2025-03-02")
    assert again.already_released
    assert again.manifest == first.manifest
    assert again.manifest["run_id"] == "manual__2025-03-01"


def test_different_content_for_an_existing_version_names_what_differs(tmp_path: Path, data_dir: Path) -> None:
    release(tmp_path, data_dir)
    with open(data_dir / "examples.jsonl", "a") as out:
        out.write(json.dumps(example(4, "ORG")) + "\n")
    with pytest.raises(ReleaseConflict) as conflict:
        release(tmp_path, data_dir, approvals=[{**APPROVALS[0], "approver": "lead@example.com"}])
    message = str(conflict.value)
    assert "release ner_news v3 already exists" in message
    assert "file 'examples.jsonl': bytes, rows, sha256 differ" in message
    assert "field 'counts' differs" in message
    assert "field 'label_distribution' differs" in message
    assert "field 'run_id'" not in message
    assert "approvals" not in message


def test_a_rerun_whose_approvals_gained_a_comment_is_the_same_release(tmp_path: Path, data_dir: Path) -> None:
    first = release(tmp_path, data_dir)
    commented = [{**APPROVALS[0], "comments": [{"author": "lead@example.com", "message": "late note"}]}]
    again = release(tmp_path, data_dir, approvals=commented)
    assert again.already_released
    assert again.manifest["approvals"] == first.manifest["approvals"] == APPROVALS


def test_a_missing_or_extra_file_is_a_conflict(tmp_path: Path, data_dir: Path) -> None:
    release(tmp_path, data_dir)
    with pytest.raises(
        ReleaseConflict, match=re.escape("file 'validation.json' only in the existing release")
    ):
        release(tmp_path, data_dir, attachments=[])


def test_verify_names_altered_missing_and_unlisted_files(tmp_path: Path, data_dir: Path) -> None:
    path = release(tmp_path, data_dir).path
    target = path / "examples.jsonl"
    os.chmod(target, 0o644)
    target.write_bytes(target.read_bytes().replace(b"Acme 1", b"Acme 9"))
    (path / "notes.txt").write_text("added later")
    (path / "validation.json").unlink()
    with pytest.raises(ReleaseCorrupt) as corrupt:
        verify_release(path)
    assert corrupt.value.problems == [
        "examples.jsonl: sha256 "
        + hashlib.sha256(target.read_bytes()).hexdigest()
        + " does not match the manifest",
        "validation.json: missing",
        "notes.txt: not in the manifest",
    ]
    with pytest.raises(ReleaseCorrupt, match=re.escape("no manifest.json")):
        verify_release(tmp_path / "elsewhere")


def test_move_takes_the_files_only_when_the_release_is_new(tmp_path: Path, data_dir: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("examples.jsonl", "validation.json"):
        (copy / name).write_bytes((data_dir / name).read_bytes())
    release(tmp_path / "store", data_dir)
    result = release(tmp_path / "store", copy, move=True)
    assert result.already_released and (copy / "examples.jsonl").exists()
    moved = write_release(tmp_path / "store", "ner_news", "v4", [copy / "examples.jsonl"], move=True)
    assert not (copy / "examples.jsonl").exists()
    verify_release(moved.path)


def test_bad_names_and_bad_records_are_refused_before_anything_is_written(
    tmp_path: Path, data_dir: Path
) -> None:
    with pytest.raises(UnsafeName, match=re.escape("version name '../v3'")):
        release_path(tmp_path, "ner_news", "../v3")
    with pytest.raises(UnsafeName, match="dataset name 'ner news'"):
        write_release(tmp_path, "ner news", "v1", [data_dir / "examples.jsonl"])
    bad = data_dir / "bad.jsonl"
    bad.write_text(
        json.dumps(example(1, "ORG")) + "\n" + json.dumps({"text": "x", "answer": "accept"}) + "\n"
    )
    with pytest.raises(InvalidRecord, match=re.escape("row bad.jsonl:2: field '_input_hash'")):
        write_release(tmp_path, "ner_news", "v5", [bad])
    assert not (tmp_path / "releases" / "ner_news" / "v5").exists()
    scored = data_dir / "scored.jsonl"
    scored.write_text(json.dumps({**example(1, "ORG"), "meta": {"score": float("nan")}}) + "\n")
    with pytest.raises(
        InvalidRecord, match=re.escape("row scored.jsonl:1: field 'content': NaN is not standard")
    ):
        write_release(tmp_path, "ner_news", "v6", [scored])
    assert not (tmp_path / "releases" / "ner_news" / "v6").exists()


def test_what_reviewers_approve_covers_the_adjudications_and_corrections_merged_in():
    from prodigy_opentext.core.release import reviewed_sha256

    export = "ab" * 32
    decided = [{"_task_hash": 1, "answer": "accept", "_adjudicated": True}]
    redone = [{"_task_hash": 2, "answer": "reject", "_session_id": "news_rework_b9_r1-bob"}]
    assert reviewed_sha256(export, [], []) == export, "nothing merged in: the export's own checksum"
    merged = reviewed_sha256(export, decided, redone)
    assert merged != export and len(merged) == 64
    assert reviewed_sha256(export, decided, list(reversed([*redone, {"_task_hash": 3}]))) != merged, (
        "a correction written after the approval changes it"
    )
    assert reviewed_sha256(export, decided, redone) == merged, "the same data, the same checksum"
    assert reviewed_sha256(export, [{**decided[0], "answer": "reject"}], redone) != merged
