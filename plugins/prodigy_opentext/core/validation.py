"""Completeness and consistency rules for an annotation dataset, in the shape Great Expectations checks.

Prodigy records are nested JSON; Great Expectations checks flat tables. :class:`AnnotationFrames` flattens
records, one at a time, into five tables (``FRAMES``):

- ``examples``: one row per example (line ``row``, hashes, ``answer``, the ``input_key`` present);
- ``labels``: one row per label an example carries (spans, task label, accepted options);
- ``label_counts``: one row per label of the scheme, with the examples (accepted or rejected) carrying it;
- ``spans``: one row per span, with ``span_in_text`` and ``span_token_aligned`` worked out while reading;
- ``disputes``: one row per dispute still open (consensus output), with its reasons.

The rules themselves are Great Expectations suites in ``include/gx/annotation_dataset/`` (one per table),
using ``$PARAMETER`` for what :class:`AnnotationRules` sets: the approved label scheme, the minimum of
examples per label and the maximum ignore rate (checked as the share of answers that are not ``ignore``,
with ``mostly``: Great Expectations' column mean looks at every value in Python). Each expectation's
``meta.message`` says, in the team's words, what a failing row means; :func:`summarize_results` turns
results into a small JSON summary with such messages and :class:`AnnotationValidationError` names the
failed rules with sample rows.

Pure Python: pandas is imported only when frames are built, Great Expectations only by the operator.
"""

from __future__ import annotations

import json
import math
import os
import string
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from prodigy_opentext.core.paths import INCLUDE_DIR
from prodigy_opentext.core.records import INPUT_KEYS, INT64_MAX, INT64_MIN, decode_record, record_labels
from prodigy_opentext.exceptions import SuiteDefinitionError

if TYPE_CHECKING:
    import pandas as pd

FRAMES = ("examples", "labels", "label_counts", "spans", "disputes")
PARAMETERS = ("label_scheme", "min_examples_per_label", "max_ignore_rate", "min_not_ignored_share")
RESULT_FIELDS = ("observed_value", "unexpected_count", "unexpected_percent")
DEFAULT_SUITE_DIR = INCLUDE_DIR / "gx" / "annotation_dataset"
SAMPLE_ROWS = 5
COLUMN_TYPES = {
    **dict.fromkeys(
        ("row", "_task_hash", "_input_hash", "input_hash", "start", "end", "text_length"), "Int64"
    ),
    **dict.fromkeys(("span_in_text", "span_token_aligned"), "boolean"),
    **dict.fromkeys(("answer", "input_key", "label"), "category"),
    "reasons": object,
    "resolved": bool,
}


@dataclass(frozen=True)
class AnnotationRules:
    """The parameters of the suites: approved labels, minimum examples per label, maximum ignore rate."""

    label_scheme: tuple[str, ...]
    min_examples_per_label: int = 1
    max_ignore_rate: float = 0.1

    def __post_init__(self) -> None:
        scheme = self.label_scheme
        if (
            isinstance(scheme, str)
            or not scheme
            or not all(isinstance(label, str) and label for label in scheme)
        ):
            raise ValueError(f"label_scheme must be a non-empty list of label names, not {scheme!r}")
        object.__setattr__(self, "label_scheme", tuple(scheme))
        if not isinstance(self.min_examples_per_label, int) or self.min_examples_per_label < 0:
            raise ValueError(
                f"min_examples_per_label must be an integer >= 0, not {self.min_examples_per_label!r}"
            )
        if not isinstance(self.max_ignore_rate, int | float) or not 0 <= self.max_ignore_rate <= 1:
            raise ValueError(f"max_ignore_rate must be between 0 and 1, not {self.max_ignore_rate!r}")

    def parameters(self) -> dict[str, Any]:
        """Values for the suites' ``$PARAMETER`` references.

        ``min_not_ignored_share`` restates the maximum ignore rate as Great Expectations' ``mostly``.
        """
        return {
            "label_scheme": list(self.label_scheme),
            "min_examples_per_label": self.min_examples_per_label,
            "max_ignore_rate": float(self.max_ignore_rate),
            "min_not_ignored_share": 1.0 - float(self.max_ignore_rate),
        }


class _Fields(msgspec.Struct):
    """A JSON object decoded into only the fields the rules read, and read like the dict it stands for."""

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None


class _Token(_Fields):
    start: Any = None
    end: Any = None


class _Span(_Fields):
    start: Any = None
    end: Any = None
    token_start: Any = None
    token_end: Any = None
    label: Any = None


class _Example(_Fields):
    """What :meth:`AnnotationFrames.add_example` reads of a record; token texts and meta are not kept."""

    _task_hash: Any = None
    _input_hash: Any = None
    answer: Any = None
    text: Any = None
    image: Any = None
    html: Any = None
    input: Any = None
    label: Any = None
    spans: list[_Span] | None = None
    token_json: msgspec.Raw = msgspec.field(default=msgspec.Raw(b"null"), name="tokens")
    """The token list as it is stored: decoded into :attr:`tokens` only where there are spans to align."""
    tokens: list[_Token] | None = msgspec.field(default=None, name="tokens (decoded)")
    """Set by :func:`_decode_example` (its JSON name is one no record uses, and overwritten if one did)."""
    options: list[msgspec.Raw] | None = None
    accept: Any = None


_OBJECT = (Mapping, _Fields)
"""A JSON object, as a dict or as the fields of it that were decoded."""
# Typed as the mapping it is read as (``get`` and ``[]``): the rules read records through those alone.
_decode_example_fields = msgspec.json.Decoder(_Example).decode
_decode_tokens = msgspec.json.Decoder(list[_Token] | None).decode


def _decode_example(line: bytes) -> Mapping[str, Any]:
    """A record's :class:`_Example` (typed as the mapping it is read as: the rules read records through
    ``get`` and ``[]`` alone); its tokens are decoded only when it has spans, the one thing they are read
    for (three NER answers in four have none)."""
    example = _decode_example_fields(line)
    example.tokens = _decode_tokens(example.token_json) if example.spans else None
    return example  # type: ignore[return-value]


def _hash(value: Any) -> int | None:
    """A stored hash as an integer, or ``None`` when missing or not an integer (both fail the rules)."""
    if isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX:
        return value
    return None


def _text(value: Any) -> str | None:
    """A value for a text column: strings as they are, anything else (a number, a list) as its JSON."""
    return value if value is None or isinstance(value, str) else json.dumps(value, default=str)


def _offset(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def span_checks(span: Any, text_length: int | None, tokens: Any) -> tuple[bool | None, bool | None]:
    """``(span_in_text, span_token_aligned)`` for one span; ``None`` where the task gives nothing to check
    against (no text, no tokens)."""
    if not isinstance(span, _OBJECT):
        return False, False
    start, end = _offset(span.get("start")), _offset(span.get("end"))
    in_text = (
        None
        if text_length is None
        else start is not None and end is not None and 0 <= start < end <= text_length
    )
    if not tokens or not isinstance(tokens, list):
        return in_text, None
    first, last = _offset(span.get("token_start")), _offset(span.get("token_end"))
    if first is None or last is None or not 0 <= first <= last < len(tokens):
        return in_text, False
    first_token, last_token = tokens[first], tokens[last]
    aligned = (
        isinstance(first_token, _OBJECT)
        and isinstance(last_token, _OBJECT)
        and first_token.get("start") == start
        and last_token.get("end") == end
    )
    return in_text, aligned


class AnnotationFrames:
    """Flattens records and disputes, one at a time, into the columns of ``FRAMES``."""

    def __init__(self, rules: AnnotationRules) -> None:
        self.rules = rules
        self.columns: dict[str, dict[str, list]] = {
            "examples": {name: [] for name in ("row", "_task_hash", "_input_hash", "answer", "input_key")},
            "labels": {name: [] for name in ("row", "_task_hash", "label")},
            "spans": {
                name: []
                for name in (
                    "row",
                    "_task_hash",
                    "start",
                    "end",
                    "label",
                    "text_length",
                    "span_in_text",
                    "span_token_aligned",
                )
            },
            "disputes": {name: [] for name in ("row", "input_hash", "label", "reasons", "resolved")},
        }
        self.examples_per_label: Counter[str] = Counter()

    def add_example(self, task: Mapping[str, Any], row: int) -> None:
        examples, labels, spans = self.columns["examples"], self.columns["labels"], self.columns["spans"]
        task_hash = _hash(task.get("_task_hash"))
        answer = task.get("answer")
        examples["row"].append(row)
        examples["_task_hash"].append(task_hash)
        examples["_input_hash"].append(_hash(task.get("_input_hash")))
        examples["answer"].append(_text(answer))
        examples["input_key"].append(next((key for key in INPUT_KEYS if task.get(key) is not None), None))
        task_labels = record_labels(task)
        for label in task_labels:
            labels["row"].append(row)
            labels["_task_hash"].append(task_hash)
            labels["label"].append(label)
        if answer != "ignore":
            self.examples_per_label.update(task_labels)
        task_spans = task.get("spans") or ()
        if not task_spans:
            return
        text = task.get("text")
        text_length = len(text) if isinstance(text, str) else None
        tokens = task.get("tokens")
        for span in task_spans:
            in_text, aligned = span_checks(span, text_length, tokens)
            fields = span if isinstance(span, _OBJECT) else {}
            spans["row"].append(row)
            spans["_task_hash"].append(task_hash)
            spans["start"].append(_offset(fields.get("start")))
            spans["end"].append(_offset(fields.get("end")))
            spans["label"].append(_text(fields.get("label")))
            spans["text_length"].append(text_length)
            spans["span_in_text"].append(in_text)
            spans["span_token_aligned"].append(aligned)

    def add_dispute(self, dispute: Mapping[str, Any], row: int) -> None:
        disputes = self.columns["disputes"]
        reasons = dispute.get("reasons") or ()
        disputes["row"].append(row)
        disputes["input_hash"].append(_hash(dispute.get("input_hash")))
        disputes["label"].append(_text(dispute.get("label")))
        disputes["reasons"].append(
            ", ".join(map(str, reasons)) if isinstance(reasons, list) else str(reasons)
        )
        disputes["resolved"].append(dispute.get("resolved") is True)

    def row_counts(self) -> dict[str, int]:
        counts = {frame: len(columns["row"]) for frame, columns in self.columns.items()}
        counts["label_counts"] = len(self.rules.label_scheme)
        return counts

    def frames(self) -> dict[str, pd.DataFrame]:
        """The tables. Integers and flags are nullable (a missing value stays visible as null); the few
        distinct answers, input keys and labels are categorical, which makes every check over them cheaper."""
        import pandas as pd

        frames = {
            frame: pd.DataFrame(
                {name: pd.array(values, dtype=COLUMN_TYPES[name]) for name, values in columns.items()}
            )
            for frame, columns in self.columns.items()
        }
        scheme = self.rules.label_scheme
        frames["label_counts"] = pd.DataFrame(
            {
                "label": pd.array(scheme, dtype=COLUMN_TYPES["label"]),
                "examples": pd.array([self.examples_per_label[label] for label in scheme], dtype="Int64"),
            }
        )
        return frames


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` per non-blank line; a line that is not a JSON object raises naming it."""
    path = Path(path)
    with open(path, "rb") as lines:
        for row, line in enumerate(lines, start=1):
            if line.strip():
                yield row, decode_record(line, row=f"{path.name}:{row}")


def read_examples(path: str | os.PathLike) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """:func:`read_jsonl` for :meth:`AnnotationFrames.add_example`: each record decoded into only the
    fields it reads (no dict of the whole record, no token texts). A line of another shape (a type the
    fields do not expect, NaN, not an object) is read by :func:`read_jsonl`'s decoder, so it gets the
    same values and the same errors."""
    path = Path(path)
    with open(path, "rb") as lines:
        for row, line in enumerate(lines, start=1):
            if line.strip():
                try:
                    yield row, _decode_example(line)
                except msgspec.MsgspecError:
                    yield row, decode_record(line, row=f"{path.name}:{row}")


def flatten_records(
    records: Iterable[tuple[int, Mapping[str, Any]]],
    rules: AnnotationRules,
    disputes: Iterable[tuple[int, Mapping[str, Any]]] = (),
) -> AnnotationFrames:
    """Flatten ``(row, record)`` pairs and ``(row, dispute)`` pairs of open disputes."""
    frames = AnnotationFrames(rules)
    for row, task in records:
        frames.add_example(task, row)
    for row, dispute in disputes:
        frames.add_dispute(dispute, row)
    return frames


def flatten_export(
    export_path: str | os.PathLike, rules: AnnotationRules, disputes_path: str | os.PathLike | None = None
) -> AnnotationFrames:
    """Flatten a JSONL export (and a JSONL file of open disputes); rows are line numbers."""
    disputes = read_jsonl(disputes_path) if disputes_path is not None else ()
    return flatten_records(read_examples(export_path), rules, disputes)


def _placeholders(template: str) -> set[str]:
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template) if name}


def load_suites(directory: str | os.PathLike = DEFAULT_SUITE_DIR) -> dict[str, dict[str, Any]]:
    """Read the suites (Great Expectations ``ExpectationSuite`` JSON, one file per table) and check them.

    Each suite names its table in ``meta.frame`` and the columns identifying a failing row in
    ``meta.index_columns``; each expectation has ``meta.rule`` and ``meta.message``, whose placeholders
    must be index columns, expectation arguments, parameters (``PARAMETERS``) or result fields
    (``RESULT_FIELDS``).
    """
    directory = Path(directory)
    suites: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.json")):
        try:
            suite = json.loads(path.read_text())
        except ValueError as err:
            raise SuiteDefinitionError(f"{path}: not valid JSON ({err})") from None
        meta = suite.get("meta") or {}
        frame = meta.get("frame")
        if frame not in FRAMES:
            raise SuiteDefinitionError(f"{path}: meta.frame {frame!r} is not one of {', '.join(FRAMES)}")
        if frame in suites:
            raise SuiteDefinitionError(f"{path}: a second suite for table {frame!r}")
        index_columns = meta.get("index_columns")
        if not isinstance(index_columns, list) or not index_columns:
            raise SuiteDefinitionError(f"{path}: meta.index_columns must list the columns naming a row")
        for position, expectation in enumerate(suite.get("expectations") or [], start=1):
            _check_expectation(path, position, expectation, index_columns)
        if not suite.get("expectations"):
            raise SuiteDefinitionError(f"{path}: no expectations")
        suites[frame] = suite
    if not suites:
        raise SuiteDefinitionError(f"{directory}: no suite files (*.json)")
    return suites


def checked_columns(suite: Mapping[str, Any]) -> list[str]:
    """The columns a suite's expectations look at (``column``, ``column_A``/``column_B``, ``column_list``)."""
    columns: dict[str, None] = {}
    for expectation in suite["expectations"]:
        kwargs = expectation["kwargs"]
        for name in (
            kwargs.get("column"),
            kwargs.get("column_A"),
            kwargs.get("column_B"),
            *kwargs.get("column_list", ()),
        ):
            if name is not None:
                columns[name] = None
    return list(columns)


def _check_expectation(path: Path, position: int, expectation: Any, index_columns: list[str]) -> None:
    where = f"{path}: expectation {position}"
    if not isinstance(expectation, dict) or not expectation.get("type") or "kwargs" not in expectation:
        raise SuiteDefinitionError(f"{where}: needs 'type' and 'kwargs'")
    meta = expectation.get("meta") or {}
    if not meta.get("rule") or not meta.get("message"):
        raise SuiteDefinitionError(f"{where} ({expectation['type']}): needs meta.rule and meta.message")
    for name, value in expectation["kwargs"].items():
        if isinstance(value, dict) and "$PARAMETER" in value and value["$PARAMETER"] not in PARAMETERS:
            raise SuiteDefinitionError(
                f"{where} ({meta['rule']}): argument {name} uses unknown parameter {value['$PARAMETER']!r} "
                f"(known: {', '.join(PARAMETERS)})"
            )
    known = {*index_columns, *expectation["kwargs"], *PARAMETERS, *RESULT_FIELDS}
    unknown = _placeholders(meta["message"]) - known
    if unknown:
        raise SuiteDefinitionError(
            f"{where} ({meta['rule']}): message names unknown fields {sorted(unknown)}"
        )


def plain(value: Any) -> Any:
    """JSON-ready copy of a result value: NumPy scalars to Python, pandas/NumPy missing values to ``None``."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    return value


def _describe(template: str, fields: Mapping[str, Any]) -> str:
    try:
        return template.format_map(dict(fields))
    except (KeyError, ValueError, TypeError, IndexError):
        return f"{template} {json.dumps(dict(fields), default=str, sort_keys=True)}"


def summarize_expectation(
    frame: str, result: Mapping[str, Any], parameters: Mapping[str, Any], sample_rows: int = SAMPLE_ROWS
) -> dict[str, Any]:
    """One expectation's outcome as small JSON: success, observed value, unexpected count, sample rows.

    ``samples`` are the rule's message for the first failing rows (said once when it names no row field).
    """
    result = plain(result)
    config = result["expectation_config"]
    kwargs = {key: value for key, value in config["kwargs"].items() if key != "batch_id"}
    meta = config.get("meta") or {}
    details = result.get("result") or {}
    template = meta["message"]
    fields = {**parameters, **kwargs, **{name: details.get(name) for name in RESULT_FIELDS}}
    rows = list(details.get("partial_unexpected_index_list") or [])[:sample_rows]
    if not rows and details.get("partial_unexpected_list"):
        rows = [
            {kwargs.get("column", "value"): value}
            for value in details["partial_unexpected_list"][:sample_rows]
        ]
    exception = result.get("exception_info") or {}
    if exception.get("raised_exception"):
        samples = [f"could not be evaluated: {exception.get('exception_message')}"]
    elif result["success"]:
        samples = []
    elif rows:
        samples = list(dict.fromkeys(_describe(template, {**fields, **row}) for row in rows))
    else:
        samples = [_describe(template, fields)]
    return {
        "frame": frame,
        "rule": meta["rule"],
        "expectation": config["type"],
        "column": kwargs.get("column"),
        "success": bool(result["success"]),
        "observed_value": details.get("observed_value"),
        "element_count": details.get("element_count"),
        "unexpected_count": details.get("unexpected_count"),
        "unexpected_percent": details.get("unexpected_percent"),
        "samples": samples,
        "sample_rows": rows,
    }


def summarize_results(
    results: Mapping[str, Mapping[str, Any]], rules: AnnotationRules, row_counts: Mapping[str, int]
) -> dict[str, Any]:
    """The suites' outcome as small, deterministic JSON (no run ids or times, so releases compare equal).

    ``results`` maps each table to its Great Expectations suite validation result (``to_json_dict()``).
    """
    expectations = [
        summarize_expectation(frame, result, rules.parameters())
        for frame, suite_result in results.items()
        for result in suite_result["results"]
    ]
    expectations.sort(key=lambda expectation: (expectation["frame"], expectation["rule"]))
    failed = sum(1 for expectation in expectations if not expectation["success"])
    return {
        "success": failed == 0,
        "parameters": rules.parameters(),
        "rows": dict(row_counts),
        "statistics": {
            "evaluated": len(expectations),
            "successful": len(expectations) - failed,
            "failed": failed,
        },
        "expectations": expectations,
    }
