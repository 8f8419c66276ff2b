"""Flattening records into the validated tables, the suite loader and the result summary (no GX run)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench.validation import LABELS as PLANTED_LABELS
from bench.validation import pandas_rules, synthetic_batch
from prodigy_opentext.core.records import record_labels
from prodigy_opentext.core.validation import (
    FRAMES,
    AnnotationRules,
    checked_columns,
    flatten_export,
    flatten_records,
    load_suites,
    read_examples,
    read_jsonl,
    span_checks,
    summarize_expectation,
    summarize_results,
)
from prodigy_opentext.exceptions import AnnotationValidationError, InvalidRecord, SuiteDefinitionError

TOKENS = [
    {"text": "Acme", "start": 0, "end": 4, "id": 0},
    {"text": "makes", "start": 5, "end": 10, "id": 1},
    {"text": "shoes", "start": 11, "end": 16, "id": 2},
]
TEXT = "Acme makes shoes"
RULES = AnnotationRules(("BRAND", "PRODUCT"), min_examples_per_label=1, max_ignore_rate=0.2)


def span(start, end, token_start=None, token_end=None, label="BRAND") -> dict:
    return {"start": start, "end": end, "token_start": token_start, "token_end": token_end, "label": label}


@pytest.mark.parametrize(
    ("the_span", "text_length", "tokens", "expected"),
    [
        (span(0, 4, 0, 0), 16, TOKENS, (True, True)),
        (span(5, 16, 1, 2), 16, TOKENS, (True, True)),
        (span(0, 5, 0, 0), 16, TOKENS, (True, False)),  # ends inside a token gap
        (span(1, 4, 0, 0), 16, TOKENS, (True, False)),  # starts inside a token
        (span(11, 20, 2, 2), 16, TOKENS, (False, False)),  # beyond the text
        (span(4, 4, 0, 0), 16, TOKENS, (False, False)),  # empty
        (span(-1, 4, 0, 0), 16, TOKENS, (False, False)),
        (span(0, 4, 0, 7), 16, TOKENS, (True, False)),  # token index out of range
        (span(0, 4), 16, TOKENS, (True, False)),  # no token indices
        (span(0, 4), 16, None, (True, None)),  # no tokens: nothing to align to
        (span(0, 4, 0, 0), None, TOKENS, (None, True)),  # no text: nothing to be inside of
        ({"start": "0", "end": 4, "label": "BRAND"}, 16, None, (False, None)),
        ("not a span", 16, TOKENS, (False, False)),
    ],
)
def test_span_checks(the_span, text_length, tokens, expected) -> None:
    assert span_checks(the_span, text_length, tokens) == expected


def records() -> list[tuple[int, dict]]:
    return list(
        enumerate(
            [
                {
                    "text": TEXT,
                    "tokens": TOKENS,
                    "spans": [span(0, 4, 0, 0)],
                    "answer": "accept",
                    "_input_hash": 1,
                    "_task_hash": -11,
                },
                {
                    "text": TEXT,
                    "tokens": TOKENS,
                    "spans": [span(0, 4, 0, 0), span(11, 16, 2, 2, "PRODUCT")],
                    "answer": "ignore",
                    "_input_hash": 2,
                    "_task_hash": -12,
                },
                {
                    "text": "shoes",
                    "label": "PRODUCT",
                    "answer": "reject",
                    "_input_hash": 3,
                    "_task_hash": -13,
                },
                {
                    "image": "data:...",
                    "options": [{"id": "A"}],
                    "accept": ["A"],
                    "answer": "accept",
                    "_input_hash": "not-an-int",
                },
            ],
            start=1,
        )
    )


def test_records_flatten_into_one_row_per_example_label_and_span() -> None:
    frames = flatten_records(
        records(), RULES, [(1, {"input_hash": 2, "label": None, "reasons": ["ignored"]})]
    )
    columns = frames.columns
    assert columns["examples"]["row"] == [1, 2, 3, 4]
    assert columns["examples"]["_task_hash"] == [-11, -12, -13, None]
    assert columns["examples"]["_input_hash"] == [1, 2, 3, None]
    assert columns["examples"]["input_key"] == ["text", "text", "text", "image"]
    assert list(zip(columns["labels"]["row"], columns["labels"]["label"], strict=True)) == [
        (1, "BRAND"),
        (2, "BRAND"),
        (2, "PRODUCT"),
        (3, "PRODUCT"),
        (4, "A"),
    ]
    assert columns["spans"]["row"] == [1, 2, 2]
    assert columns["spans"]["text_length"] == [16, 16, 16]
    assert columns["disputes"]["reasons"] == ["ignored"] and columns["disputes"]["resolved"] == [False]
    assert frames.examples_per_label == {
        "BRAND": 1,
        "PRODUCT": 1,
        "A": 1,
    }  # the ignored example does not count
    assert frames.row_counts() == {"examples": 4, "labels": 5, "spans": 3, "disputes": 1, "label_counts": 2}


def test_tables_keep_missing_values_visible() -> None:
    tables = flatten_records(records(), RULES).frames()
    assert set(tables) == set(FRAMES)
    examples = tables["examples"]
    assert str(examples["_task_hash"].dtype) == "Int64"
    assert examples["_task_hash"].isna().tolist() == [False, False, False, True]
    assert tables["label_counts"].to_dict("records") == [
        {"label": "BRAND", "examples": 1},
        {"label": "PRODUCT", "examples": 1},
    ]
    assert len(tables["disputes"]) == 0 and list(tables["disputes"].columns) == [
        "row",
        "input_hash",
        "label",
        "reasons",
        "resolved",
    ]


def test_an_export_line_that_is_not_json_is_named(tmp_path: Path) -> None:
    export = tmp_path / "batch.jsonl"
    export.write_text('{"text": "a", "answer": "accept"}\n\n{"text": "b", \n')
    with pytest.raises(InvalidRecord, match=re.escape("row batch.jsonl:3: field 'content': not valid JSON")):
        flatten_export(export, RULES)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"label_scheme": ()}, "label_scheme"),
        ({"label_scheme": "BRAND"}, "label_scheme"),
        ({"label_scheme": ("BRAND", "")}, "label_scheme"),
        ({"label_scheme": ("BRAND",), "min_examples_per_label": -1}, "min_examples_per_label"),
        ({"label_scheme": ("BRAND",), "max_ignore_rate": 1.5}, "max_ignore_rate"),
    ],
)
def test_bad_rule_parameters_are_refused(options, message) -> None:
    with pytest.raises(ValueError, match=message):
        AnnotationRules(**options)


def test_parameters_restate_the_ignore_rate_for_mostly() -> None:
    assert RULES.parameters() == {
        "label_scheme": ["BRAND", "PRODUCT"],
        "min_examples_per_label": 1,
        "max_ignore_rate": 0.2,
        "min_not_ignored_share": pytest.approx(0.8),
    }


def test_the_shipped_suites_cover_every_table() -> None:
    suites = load_suites()
    assert set(suites) == set(FRAMES)
    assert checked_columns(suites["spans"]) == ["label", "span_in_text", "span_token_aligned"]
    rules = {e["meta"]["rule"] for suite in suites.values() for e in suite["expectations"]}
    assert {
        "label_in_scheme",
        "span_in_text",
        "span_token_aligned",
        "task_hash_unique",
        "answer_allowed",
        "min_examples_per_label",
        "max_ignore_rate",
        "no_open_disputes",
    } <= rules


def write_suite(directory: Path, name: str, frame: str, expectation: dict) -> None:
    suite = {
        "name": name,
        "meta": {"frame": frame, "index_columns": ["row", "label"]},
        "expectations": [expectation],
    }
    (directory / f"{name}.json").write_text(json.dumps(suite))


GOOD = {
    "type": "expect_column_values_to_be_in_set",
    "kwargs": {"column": "label", "value_set": {"$PARAMETER": "label_scheme"}},
    "meta": {"rule": "label_in_scheme", "message": "label {label!r} (row {row}) not in {value_set}"},
}


@pytest.mark.parametrize(
    ("frame", "expectation", "message"),
    [
        ("tokens", GOOD, "meta.frame 'tokens' is not one of"),
        (
            "labels",
            {**GOOD, "kwargs": {"column": "label", "value_set": {"$PARAMETER": "labels"}}},
            "unknown parameter 'labels'",
        ),
        ("labels", {**GOOD, "meta": {"rule": "r", "message": "label {name}"}}, "unknown fields ['name']"),
        ("labels", {**GOOD, "meta": {"rule": "r"}}, "needs meta.rule and meta.message"),
        ("labels", {"kwargs": {}}, "needs 'type' and 'kwargs'"),
    ],
)
def test_unusable_suites_are_refused_naming_file_and_expectation(
    tmp_path, frame, expectation, message
) -> None:
    write_suite(tmp_path, "labels", frame, expectation)
    with pytest.raises(SuiteDefinitionError, match=re.escape(message)) as refused:
        load_suites(tmp_path)
    assert "labels.json" in str(refused.value)


def test_a_second_suite_for_a_table_and_an_empty_directory_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SuiteDefinitionError, match="no suite files"):
        load_suites(tmp_path)
    write_suite(tmp_path, "a", "labels", GOOD)
    write_suite(tmp_path, "b", "labels", GOOD)
    with pytest.raises(SuiteDefinitionError, match="a second suite for table 'labels'"):
        load_suites(tmp_path)


def gx_result(success: bool, result: dict, meta: dict, **kwargs) -> dict:
    """The shape of one entry of a GX suite result's ``to_json_dict()['results']``."""
    return {
        "success": success,
        "expectation_config": {"type": "expect_x", "kwargs": {"batch_id": "b", **kwargs}, "meta": meta},
        "result": result,
        "exception_info": {"raised_exception": False, "exception_message": None},
    }


def test_failed_rules_are_described_row_by_row_and_aggregates_once() -> None:
    label_rule = gx_result(
        False,
        {
            "element_count": 9,
            "unexpected_count": 2,
            "unexpected_percent": 22.2,
            "partial_unexpected_index_list": [
                {"row": 5, "_task_hash": -123, "label": "FOO"},
                {"row": 8, "_task_hash": float("nan"), "label": "BAR"},
            ],
        },
        {
            "rule": "label_in_scheme",
            "message": "label {label!r} not in scheme (task_hash {_task_hash}, row {row})",
        },
        column="label",
    )
    ignore_rule = gx_result(
        False,
        {
            "element_count": 10,
            "unexpected_count": 3,
            "unexpected_percent": 30.0,
            "partial_unexpected_index_list": [{"row": 1}, {"row": 2}, {"row": 3}],
        },
        {
            "rule": "max_ignore_rate",
            "message": "ignore rate {unexpected_percent:.2f}% above {max_ignore_rate:.0%}",
        },
        column="answer",
    )
    passing = gx_result(True, {"observed_value": 12}, {"rule": "not_empty", "message": "empty"})
    summary = summarize_results(
        {"labels": {"results": [label_rule]}, "examples": {"results": [ignore_rule, passing]}},
        RULES,
        {"labels": 9},
    )
    assert summary["success"] is False
    assert summary["statistics"] == {"evaluated": 3, "successful": 1, "failed": 2}
    by_rule = {e["rule"]: e for e in summary["expectations"]}
    assert by_rule["label_in_scheme"]["samples"] == [
        "label 'FOO' not in scheme (task_hash -123, row 5)",
        "label 'BAR' not in scheme (task_hash None, row 8)",
    ]
    assert by_rule["label_in_scheme"]["unexpected_count"] == 2
    assert by_rule["max_ignore_rate"]["samples"] == ["ignore rate 30.00% above 20%"]
    assert by_rule["not_empty"] == {
        **by_rule["not_empty"],
        "success": True,
        "samples": [],
        "observed_value": 12,
    }
    error = AnnotationValidationError(summary)
    assert str(error).splitlines() == [
        "annotation validation failed: 2 of 3 rules broken",
        "- examples.max_ignore_rate (3 of 10 rows): ignore rate 30.00% above 20%",
        "- labels.label_in_scheme (2 of 9 rows): label 'FOO' not in scheme (task_hash -123, row 5); "
        "label 'BAR' not in scheme (task_hash None, row 8)",
    ]
    json.dumps(summary)  # JSON-ready for XCom


def test_a_rule_that_could_not_be_evaluated_fails_with_the_reason() -> None:
    broken = gx_result(False, {}, {"rule": "span_in_text", "message": "m"}, column="span_in_text")
    broken["exception_info"] = {"raised_exception": True, "exception_message": "column not found"}
    assert summarize_expectation("spans", broken, RULES.parameters())["samples"] == [
        "could not be evaluated: column not found"
    ]


def test_values_of_the_wrong_type_stay_visible_as_text() -> None:
    task = {
        "text": TEXT,
        "answer": ["accept"],
        "spans": [{"start": 0, "end": 4, "label": {"name": "BRAND"}}],
        "_input_hash": 1,
        "_task_hash": 2,
    }
    tables = flatten_records([(1, task)], RULES).frames()
    assert tables["examples"]["answer"].tolist() == ['["accept"]']
    assert tables["spans"]["label"].tolist() == ['{"name": "BRAND"}']


def odd_records() -> list[dict]:
    """Records of shapes the field decoder does not take, each read as the dict json gives."""
    base = {"text": TEXT, "answer": "accept", "_input_hash": 1, "_task_hash": 2}
    return [
        {**base, "tokens": "not a list", "spans": [span(0, 4, 0, 0)]},
        {**base, "tokens": TOKENS, "spans": ["not an object", span(0, 4, 0, 0)]},
        {**base, "tokens": [1, 2, 3], "spans": [span(0, 4, 0, 0)]},
        {**base, "tokens": TOKENS, "spans": [{"start": True, "end": 4.0, "token_start": 0, "token_end": 0}]},
        {**base, "answer": ["accept"], "_input_hash": 2**70, "_task_hash": True, "label": {"name": "X"}},
        {**base, "meta": {"score": float("nan")}, "spans": [span(0, 4, 0, 0, "PRODUCT")]},
        {**base, "text": 5, "options": "x", "accept": ["A"]},
    ]


def tables_both_ways(path: Path, rules: AnnotationRules) -> tuple[dict, dict]:
    """The tables from records decoded into fields (the operator's way) and from whole dicts."""
    return (
        flatten_records(read_examples(path), rules).frames(),
        flatten_records(read_jsonl(path), rules).frames(),
    )


@pytest.mark.parametrize("batch", ["planted", "odd", "samples"])
def test_records_decoded_into_fields_give_the_tables_and_verdicts_of_whole_dicts(
    batch: str, tmp_path: Path, prodigy_samples_dir: Path
) -> None:
    path = tmp_path / "annotations.jsonl"
    if batch == "samples":  # every real Prodigy export the tests hold, one after another
        lines = [
            line for f in sorted(prodigy_samples_dir.glob("*.jsonl")) for line in f.read_text().splitlines()
        ]
        labels = tuple(sorted({label for line in lines for label in record_labels(json.loads(line))})) or (
            "X",
        )
        path.write_text("\n".join(lines) + "\n")
    else:
        tasks = [task for _, task in synthetic_batch(2_000)] if batch == "planted" else odd_records()
        labels = PLANTED_LABELS if batch == "planted" else RULES.label_scheme
        path.write_text("".join(json.dumps(task) + "\n" for task in tasks))
    rules = AnnotationRules(labels, min_examples_per_label=10, max_ignore_rate=0.05)
    decoded_as = {type(task).__name__ for _, task in read_examples(path)}
    assert decoded_as == ({"dict", "_Example"} if batch == "odd" else {"_Example"}), decoded_as
    fields, dicts = tables_both_ways(path, rules)
    for frame in FRAMES:
        assert fields[frame].equals(dicts[frame]), frame
        assert (fields[frame].dtypes == dicts[frame].dtypes).all(), frame
    verdicts = {key: outcome["success"] for key, outcome in pandas_rules(fields, rules.parameters()).items()}
    assert verdicts == {key: o["success"] for key, o in pandas_rules(dicts, rules.parameters()).items()}
    if batch == "planted":
        assert {key for key, ok in verdicts.items() if not ok} >= {
            ("labels", "label_in_scheme"),
            ("spans", "span_in_text"),
            ("spans", "span_token_aligned"),
            ("examples", "task_hash_unique"),
            ("examples", "answer_present"),
        }


def test_a_line_the_field_decoder_refuses_is_named_as_before(tmp_path: Path) -> None:
    path = tmp_path / "annotations.jsonl"
    path.write_text('{"text": "fine", "answer": "accept", "_input_hash": 1, "_task_hash": 2}\n[1, 2]\n')
    with pytest.raises(InvalidRecord, match=re.escape("annotations.jsonl:2")):
        list(read_examples(path))
