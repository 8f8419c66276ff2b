"""Streaming export: rows written as stored, bad ones quarantined, counts done before publishing."""

from __future__ import annotations

import hashlib
import itertools
import json

import pytest

from prodigy_opentext.core.export import (
    JsonlSink,
    LinesByInput,
    ParquetSink,
    QuarantineFile,
    export_records,
)
from prodigy_opentext.core.records import RecordSummary, parse_record
from tests.core.test_records import ODD_SHAPES, valid_task


def test_export_counts_before_it_publishes_and_keeps_one_line_per_row(tmp_path):
    odd = [json.dumps(valid_task(_task_hash=n, **shape)).encode() for n, shape in enumerate(ODD_SHAPES)]
    carriage_return = b'{"text": "x", "_input_hash": 1, "_task_hash": 99,\r"answer": "accept"}'
    manifest = export(tmp_path, [[(n + 1, raw) for n, raw in enumerate([*odd, carriage_return])]])
    lines = (tmp_path / "out.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) - 1 == manifest["rows"] == len(odd) + 1
    assert json.loads(lines[-2]) == json.loads(carriage_return)
    generic = RecordSummary()
    for number, raw in enumerate([*odd, carriage_return], 1):
        generic.add(parse_record(raw, row=number))
    assert {key: manifest[key] for key in ("by_answer", "by_label", "by_annotator")} == {
        key: value for key, value in generic.as_dict().items() if key != "total"
    }


def export(tmp_path, batches, sink=None, **options):
    sink = sink or JsonlSink(tmp_path / "out.jsonl")
    return export_records("news", batches, sink, QuarantineFile(tmp_path / "bad.jsonl"), **options)


def test_export_writes_rows_as_stored_quarantines_bad_ones_and_reports_progress(tmp_path):
    good = [json.dumps(valid_task(_task_hash=n, label="L")).encode() for n in range(5)]
    pretty = json.dumps(valid_task(_task_hash=9, answer="reject"), indent=2).encode()
    batches = [
        [(1, good[0]), (2, memoryview(good[1])), (3, b"{broken")],
        [(4, pretty), (5, good[2])],
        [(8, good[3])],
    ]
    seen = []
    manifest = export(tmp_path, batches, on_progress=seen.append, progress_every=2)
    lines = (tmp_path / "out.jsonl").read_bytes().splitlines()
    assert lines[:2] == good[:2] and lines[3:] == good[2:4]
    assert json.loads(lines[2]) == json.loads(pretty)
    assert manifest["read"] == 6 and manifest["rows"] == 5 and manifest["quarantined"] == 1
    assert (manifest["first_example_id"], manifest["last_example_id"]) == (1, 8)
    assert manifest["by_answer"] == {"accept": 4, "reject": 1} and manifest["by_label"] == {"L": 4}
    assert manifest["sha256"] == hashlib.sha256((tmp_path / "out.jsonl").read_bytes()).hexdigest()
    assert [json.loads(line)["example_id"] for line in (tmp_path / "bad.jsonl").read_text().splitlines()] == [
        3
    ]
    assert seen == [3, 5, 6]

    accepted = export(tmp_path, batches, answer="accept")
    assert accepted["rows"] == 4 and accepted["read"] == 6 and accepted["quarantined"] == 1


def test_failed_export_leaves_no_partial_file(tmp_path):
    def batches():
        yield [(1, json.dumps(valid_task()).encode())]
        raise ConnectionError("database went away")

    with pytest.raises(ConnectionError):
        export(tmp_path, batches())
    assert list(tmp_path.iterdir()) == []


def test_parquet_export_keeps_each_task_and_its_counted_columns(tmp_path):
    import pyarrow.parquet as pq

    tasks = [valid_task(_task_hash=n, spans=[{"label": "B"}], _annotator_id="news-ann") for n in range(3)]
    batches = [[(10 + n, json.dumps(task).encode()) for n, task in enumerate(tasks)]]
    manifest = export(tmp_path, batches, sink=ParquetSink(tmp_path / "out.parquet"))
    rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert [json.loads(row["content"]) for row in rows] == tasks
    assert [(row["example_id"], row["labels"], row["annotator"]) for row in rows] == [
        (10 + n, ["B"], "news-ann") for n in range(3)
    ]
    assert manifest["sha256"] == hashlib.sha256((tmp_path / "out.parquet").read_bytes()).hexdigest()


def test_lines_by_input_read_the_export_back_one_input_at_a_time_in_file_order(tmp_path):
    inputs = [7, -3, 7, 12, -3, 7]
    rows = [json.dumps(valid_task(_input_hash=h, _task_hash=n)).encode() for n, h in enumerate(inputs)]
    rows[4] = json.dumps(json.loads(rows[4]), indent=2).encode()  # written as another (one-line) line
    by_input = LinesByInput()
    export(
        tmp_path,
        [[(n + 1, raw)] for n, raw in enumerate(rows)],
        JsonlSink(tmp_path / "out.jsonl", by_input=by_input),
    )
    lines = (tmp_path / "out.jsonl").read_bytes().splitlines()

    read = list(by_input.read(tmp_path / "out.jsonl"))

    assert len(by_input) == len(rows)
    assert [input_hash for input_hash, _, _ in read] == [-3, 7, 12]
    assert {h: found for h, _, found in read} == {
        -3: [lines[1], lines[4]],
        7: [lines[0], lines[2], lines[5]],
        12: [lines[3]],
    }
    starts = [0, *itertools.accumulate(len(line) + 1 for line in lines)]
    assert {h: places for h, places, _ in read} == {
        -3: [starts[1], starts[4]],
        7: [starts[0], starts[2], starts[5]],
        12: [starts[3]],
    }
    assert json.loads(lines[4]) == json.loads(rows[4]) and b"\n" not in lines[4]
    (tmp_path / "out.jsonl").write_bytes(b"\n".join(lines[:-1]) + b"\n")  # another run wrote it since
    with pytest.raises(OSError, match="it was written again"):
        next(by_input.read(tmp_path / "out.jsonl"))
