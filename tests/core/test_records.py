"""Prodigy record rules, checked on real Prodigy exports and on broken rows."""

from __future__ import annotations

import json

import pytest

from prodigy_opentext.core.records import (
    ANSWERS,
    INPUT_KEYS,
    AnnotationProgress,
    BatchTarget,
    RecordSummary,
    annotator_of,
    decode_record,
    parse_record,
    read_task_source,
    record_labels,
    refuse_non_standard_json,
    scan_record,
    set_hashes,
    standard_json,
    standard_json_line,
)
from prodigy_opentext.exceptions import InvalidRecord, InvalidRecords
from tests.fixtures.samples import SAMPLES_DIR as SAMPLES


def summarize(name: str) -> dict:
    summary = RecordSummary()
    with (SAMPLES / name).open("rb") as lines:
        for number, line in enumerate(lines, 1):
            summary.add(parse_record(line, row=number))
    return summary.as_dict()


def test_constants_name_prodigys_inputs_and_answers():
    assert INPUT_KEYS == ("text", "image", "html", "input")
    assert ANSWERS == ("accept", "reject", "ignore")


@pytest.mark.parametrize(
    ("name", "total", "by_answer", "by_label"),
    [
        ("ner_fashion_brands.jsonl", 1235, {"accept": 1235}, {"FASHION_BRAND": 305}),
        ("ner_manual_food.jsonl", 949, {"accept": 949}, {"INGRED": 443}),
        ("textcat_docs_issues.jsonl", 661, {"accept": 201, "reject": 460}, {"DOCUMENTATION": 661}),
    ],
)
def test_real_exports_parse_and_summarize(name, total, by_answer, by_label):
    summary = summarize(name)
    assert summary == {"total": total, "by_answer": by_answer, "by_label": by_label, "by_annotator": {}}


def test_parse_accepts_bytes_memoryview_str_and_dict_alike():
    line = (SAMPLES / "textcat_docs_issues.jsonl").read_bytes().split(b"\n", 1)[0]
    expected = json.loads(line)
    assert parse_record(line, row=1) == expected
    assert parse_record(memoryview(line), row=1) == expected
    assert parse_record(line.decode(), row=1) == expected
    assert parse_record(dict(expected), row=1) == expected


def valid_task(**changes) -> dict:
    task = {"text": "Nike shoes", "_input_hash": 1, "_task_hash": -2, "answer": "accept"}
    task.update(changes)
    return {key: value for key, value in task.items() if value is not None}


@pytest.mark.parametrize(
    ("raw", "field", "reason"),
    [
        (b'{"text": "cut off', "content", "not valid JSON"),
        (b"[1, 2]", "content", "not an object"),
        (b"\xff\xfe", "content", "not valid JSON"),
        (valid_task(_task_hash=None), "_task_hash", "missing"),
        (valid_task(_input_hash="12"), "_input_hash", "not an integer"),
        (valid_task(_task_hash=True), "_task_hash", "not an integer"),
        (valid_task(answer=None), "answer", "missing"),
        (valid_task(answer="maybe"), "answer", "not one of accept, reject, ignore"),
        (valid_task(text=None), "text", "no input key"),
    ],
)
def test_invalid_records_name_row_and_field(raw, field, reason):
    with pytest.raises(InvalidRecord) as caught:
        parse_record(raw, row=17)
    assert caught.value.row == 17
    assert caught.value.field == field
    assert "row 17" in str(caught.value) and repr(field) in str(caught.value)
    assert reason in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("input_key", INPUT_KEYS)
def test_any_input_key_is_enough(input_key):
    task = valid_task(text=None)
    task[input_key] = "x"
    assert parse_record(task, row=1) is task


def test_labels_from_spans_label_and_accepted_options_without_repeats():
    assert record_labels({"spans": [{"label": "B"}, {"label": "A"}, {"label": "B"}], "label": "C"}) == [
        "B",
        "A",
        "C",
    ]
    choice = {"options": [{"id": 1}, {"id": "SPAM"}, {"id": 3}], "accept": [1, "SPAM"]}
    assert record_labels(choice) == ["1", "SPAM"]
    assert record_labels({"accept": ["not-a-choice-task"]}) == []
    assert record_labels({"text": "no labels", "spans": []}) == []


def test_annotator_prefers_named_session_over_session_id():
    assert annotator_of({"_annotator_id": "news-alice", "_session_id": "news-alice"}) == "news-alice"
    assert annotator_of({"_session_id": "2024-01-01_10-00-00"}) == "2024-01-01_10-00-00"
    assert annotator_of({"_session_id": None}) is None


def test_summary_counts_answers_labels_annotators_with_sorted_keys():
    summary = RecordSummary()
    summary.add(valid_task(label="Z", _annotator_id="ds-bob"))
    summary.add(valid_task(answer="reject", label="A", _annotator_id="ds-alice"))
    summary.add(valid_task(answer="ignore", spans=[{"label": "A"}, {"label": "A"}], _session_id="ds-bob"))
    result = summary.as_dict()
    assert result == {
        "total": 3,
        "by_answer": {"accept": 1, "ignore": 1, "reject": 1},
        "by_label": {"A": 2, "Z": 1},
        "by_annotator": {"ds-alice": 1, "ds-bob": 2},
    }
    assert list(result["by_answer"]) == sorted(result["by_answer"])
    assert list(result["by_annotator"]) == ["ds-alice", "ds-bob"]


BROKEN_ROWS = [
    b'{"text": "cut off',
    b"[1, 2]",
    b'{"text": "bad \xff byte", "_input_hash": 1, "_task_hash": 2, "answer": "accept"}',
    b'{"text": "x", "_input_hash": 1, "answer": "accept"}',
    b'{"text": "x", "_input_hash": 1, "_task_hash": true, "answer": "accept"}',
    b'{"text": "x", "_input_hash": 1.5, "_task_hash": 2, "answer": "accept"}',
    b'{"text": "x", "_input_hash": 1, "_task_hash": 2, "answer": ["accept"]}',
    b'{"text": "x", "_input_hash": 1, "_task_hash": 2}',
    b'{"spans": [], "_input_hash": 1, "_task_hash": 2, "answer": "ignore"}',
    b'{"text": "x", "_input_hash": 1, "_task_hash": 2, "answer": "accept"} trailing',
]


@pytest.mark.parametrize("raw", BROKEN_ROWS)
def test_fast_scan_refuses_exactly_what_parse_refuses(raw):
    with pytest.raises(InvalidRecord) as parsed:
        parse_record(raw, row=9, where="example id")
    with pytest.raises(InvalidRecord) as scanned:
        scan_record(raw, row=9, where="example id")
    assert str(scanned.value) == str(parsed.value)
    assert str(scanned.value).startswith("example id 9: field ")


def test_fast_scan_keeps_the_keys_summaries_read_on_every_real_row():
    for name in ("ner_fashion_brands.jsonl", "ner_manual_food.jsonl", "textcat_docs_issues.jsonl"):
        for number, line in enumerate((SAMPLES / name).read_bytes().splitlines(), 1):
            full, keys = parse_record(line, row=number), scan_record(line, row=number)
            assert record_labels(keys) == record_labels(full) and annotator_of(keys) == annotator_of(full)
            assert {key: keys[key] for key in ("_input_hash", "_task_hash", "answer")} == {
                key: full[key] for key in ("_input_hash", "_task_hash", "answer")
            }


ODD_SHAPES = [
    {"label": ["not", "hashable"], "_annotator_id": "ds-alice"},
    {"options": [{"id": 1}, {"id": 2}], "accept": [2], "_session_id": "2024-01-01_10-00-00"},
    {"options": [{"id": 1}], "accept": [{"id": 1}]},
    {"spans": [{"label": "A"}, {"start": 0}, {"label": 3}], "label": "B", "_annotator_id": ""},
    {"spans": [[0, 1, "A"]], "answer": "reject"},
    {"spans": [], "label": "C", "_annotator_id": 7},
    {"label": 1, "_annotator_id": 7.0},
    {"label": True, "_annotator_id": True},
    {"label": 1.0, "spans": [{"label": 1}], "_session_id": 0.0},
    {"label": -0.0, "options": [{"id": 1}], "accept": [1, True, 1.0]},
    {"spans": 5, "options": [{"id": 1}], "accept": 3},
]


def test_fast_summary_counts_as_the_generic_one_on_real_and_odd_rows():
    lines = [
        line
        for name in ("ner_fashion_brands.jsonl", "ner_manual_food.jsonl", "textcat_docs_issues.jsonl")
        for line in (SAMPLES / name).read_bytes().splitlines()
    ]
    lines += [json.dumps(valid_task(**shape)).encode() for shape in ODD_SHAPES for _ in range(2)]
    generic, fast = RecordSummary(), RecordSummary()
    for number, line in enumerate(lines, 1):
        generic.add(parse_record(line, row=number))
        fast.add_scanned(scan_record(line, row=number))
    assert fast.as_dict() == generic.as_dict()
    assert fast.as_dict()["by_label"]["2"] == 2 and fast.as_dict()["by_annotator"]["7"] == 2
    assert {"1", "True", "1.0", "-0.0"} <= fast.as_dict()["by_label"].keys()
    assert fast.as_dict()["total"] == len(lines)


def test_fast_scan_takes_what_json_takes_beyond_its_types():
    odd = b'{"text": "x", "_input_hash": 1, "_task_hash": 2, "answer": "accept", "label": 7}'
    assert scan_record(odd, row=1)["label"] == 7
    for huge in (2**63, 2**70, -(2**63) - 1):  # beyond Prodigy's BIGINT columns: refused alike
        beyond = b'{"text": "x", "_input_hash": %d, "_task_hash": 2, "answer": "accept"}' % huge
        with pytest.raises(InvalidRecord, match=r"_input_hash': .* beyond Prodigy's 64-bit hash columns"):
            scan_record(beyond, row=1)
        with pytest.raises(InvalidRecord, match=r"_input_hash': .* beyond Prodigy's 64-bit hash columns"):
            parse_record(beyond, row=1)
    assert scan_record(
        b'{"text": "x", "_input_hash": %d, "_task_hash": 2, "answer": "accept"}' % (2**63 - 1), row=1
    )
    assert scan_record(
        b'{"html": "<b>", "_input_hash": 1, "_task_hash": 2, "answer": "reject", "score": NaN}', row=1
    )


def test_hashes_follow_input_and_question():
    first = set_hashes({"text": "Nike shoes", "label": "BRAND"})
    again = set_hashes({"label": "BRAND", "text": "Nike shoes"})
    other_question = set_hashes({"text": "Nike shoes", "label": "PRODUCT"})
    assert (first["_input_hash"], first["_task_hash"]) == (again["_input_hash"], again["_task_hash"])
    assert other_question["_input_hash"] == first["_input_hash"]
    assert other_question["_task_hash"] != first["_task_hash"]
    assert all(-(2**31) <= first[key] < 2**31 for key in ("_input_hash", "_task_hash"))
    assert set_hashes({"text": "kept", "_input_hash": 5, "_task_hash": 6})["_task_hash"] == 6


def test_task_sources_name_every_bad_line(tmp_path):
    jsonl = tmp_path / "tasks.jsonl"
    jsonl.write_text(
        '{"text": "a"}\n\n{"image": "b.png", "meta": {"id": 2}}\n{"oops"\n{"meta": {}}\n', encoding="utf-8"
    )
    with pytest.raises(InvalidRecords) as caught:
        read_task_source(jsonl)
    assert [(error.row, error.field) for error in caught.value.errors] == [(4, "content"), (5, "text")]
    assert f"{jsonl}: 2 invalid rows: line 4: field 'content'" in str(caught.value)

    table = tmp_path / "tasks.csv"
    table.write_text(
        'body,source\n"first, with comma",web\n"second\nspans lines",mail\n,web\n', encoding="utf-8"
    )
    with pytest.raises(InvalidRecords, match="line 5: field 'body': empty text"):
        read_task_source(table, text_column="body")
    table.write_text('body,source\n"first, with comma",web\n"second\nspans lines",mail\n', encoding="utf-8")
    tasks = read_task_source(table, text_column="body")
    assert [(task["text"], task["meta"]) for task in tasks] == [
        ("first, with comma", {"source": "web"}),
        ("second\nspans lines", {"source": "mail"}),
    ]
    with pytest.raises(InvalidRecords, match="line 1: field 'text': no such column"):
        read_task_source(table)
    with pytest.raises(ValueError, match="source format 'xml' is not one of jsonl, json, csv, txt"):
        read_task_source(tmp_path / "tasks.xml")


def test_batch_targets():
    done = {"answers": 12, "inputs": 6, "inputs_done": 6}
    assert BatchTarget(min_answers=12).reached(done)
    assert not BatchTarget(min_answers=13).reached(done)
    assert BatchTarget(annotators_per_input=2, min_inputs=6).reached(done)
    assert not BatchTarget(annotators_per_input=2, min_inputs=7).reached(done)
    assert not BatchTarget(annotators_per_input=2).reached({**done, "inputs_done": 5})
    assert BatchTarget.from_rendered("None", "2", "") == BatchTarget(None, 2, 1)
    with pytest.raises(ValueError, match="annotators_per_input must be a whole number, not 'two'"):
        BatchTarget.from_rendered(None, "two")


def test_annotation_progress_counts_distinct_annotators_per_input():
    progress = AnnotationProgress()
    for annotator, input_hash, answer in [
        ("a", 1, "accept"),
        ("b", 1, "reject"),
        ("a", 2, "accept"),
        ("a", 2, "ignore"),
    ]:
        progress.add(valid_task(_input_hash=input_hash, answer=answer, _annotator_id=annotator))
    result = progress.as_dict()
    assert result["inputs"] == 2 and result["inputs_by_annotator_count"] == {"1": 1, "2": 1}
    assert result["annotators"]["a"] == {"answers": 3, "by_answer": {"accept": 2, "ignore": 1}}
    assert progress.inputs_with(2) == 1 and progress.inputs_with(1) == 2


def test_nan_and_infinity_become_null_and_say_where():
    task = {"text": "x", "meta": {"score": float("nan")}, "spans": [{"score": 0.5}, {"score": float("-inf")}]}
    clean, changed = standard_json(task)
    assert changed == ["meta.score", "spans[1].score"]
    assert clean["meta"]["score"] is None and clean["spans"] == [{"score": 0.5}, {"score": None}]
    assert json.dumps(clean, allow_nan=False), "standard JSON now"
    assert task["meta"]["score"] != task["meta"]["score"], "the record itself is left as it was"
    untouched = {"text": "x", "meta": {"score": 0.3}}
    assert standard_json(untouched) == (untouched, [])


def test_non_standard_json_is_refused_naming_the_row():
    refuse_non_standard_json(b'{"text": "NaN and Infinity are fine inside a string"}', row=1)
    with pytest.raises(InvalidRecord, match=r"row annotations.jsonl:3: field 'content': NaN is not standard"):
        refuse_non_standard_json(b'{"meta": {"score": NaN}}', row="annotations.jsonl:3")


def test_a_standard_json_line_is_json_dumps_value_with_nan_named_and_nulled() -> None:
    rows = [json.loads(line) for line in (SAMPLES / "ner_fashion_brands.jsonl").read_text().splitlines()]
    for row in rows[:50]:
        line, changed = standard_json_line(row)
        assert changed == [] and json.loads(line) == row and b"\n" not in line
        assert list(json.loads(line)) == sorted(row), "keys sorted"
    scored = {
        "text": "é",
        "meta": {"score": float("nan")},
        "spans": [{"score": -float("inf")}, {"score": 1e308}],
    }
    line, changed = standard_json_line(scored)
    assert changed == ["meta.score", "spans[0].score"]
    assert json.loads(line, parse_constant=pytest.fail) == standard_json(scored)[0]
    for odd in ({"text": "\ud800 lone surrogate"}, {"big": 2**70}, {"big": 2**70, "score": float("inf")}):
        line, changed = standard_json_line(odd)
        assert json.loads(line, parse_constant=pytest.fail) == standard_json(odd)[0]
        assert changed == (["score"] if "score" in odd else [])
    for row in ({"z": 1, "a": {"y": float("nan"), "b": 2}}, {"z": 2**70, "a": float("inf")}):
        line, changed = standard_json_line(row, sort_keys=False)
        assert list(json.loads(line)) == list(row) and changed, "the keys' order kept, non-finite still named"


def test_decode_record_gives_json_loads_value_and_errors() -> None:
    for raw in (
        b'{"a": NaN}',
        b'{"a": 1e400}',
        b'{"a": "\\ud800"}',
        b'{"a": 123456789012345678901234567890}',
    ):
        assert repr(decode_record(raw, row=1)) == repr(json.loads(raw))
    with pytest.raises(InvalidRecord, match="not an object"):
        decode_record(b"[1]", row=1)
    with pytest.raises(InvalidRecord, match="not valid JSON"):
        decode_record(b'{"a": ', row=1)
