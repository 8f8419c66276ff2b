"""Prodigy annotation records: what a valid example is, its labels and annotator, and counts over many.

Plain Python (no Airflow import) so that exporters, quality checks and release code share one definition of
what a valid Prodigy example is. A record is the task JSON Prodigy stores in ``example.content``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypedDict

import msgspec

from prodigy_opentext.core.params import from_rendered
from prodigy_opentext.core.payloads import RecordCounts
from prodigy_opentext.exceptions import InvalidRecord, InvalidRecords

INPUT_KEYS = ("text", "image", "html", "input")
ANSWERS = ("accept", "reject", "ignore")
HASH_KEYS = ("_input_hash", "_task_hash")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

RawRecord = bytes | bytearray | memoryview | str


SOURCE_FORMATS = ("jsonl", "json", "csv", "txt")


_decode_json: Callable[[bytes | str], Any] = msgspec.json.Decoder().decode


def check_dataset_name(name: str) -> str:
    """Prodigy's rule for dataset names: not empty, no commas, no whitespace."""
    if not isinstance(name, str) or not name or "," in name or any(char.isspace() for char in name):
        raise ValueError(
            f"invalid Prodigy dataset name {name!r}: it must be non-empty, without commas or spaces"
        )
    return name


def as_bytes(raw: RawRecord) -> bytes:
    """Database drivers return BLOBs as bytes (SQLite) or memoryview (psycopg2's BYTEA)."""
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, str):
        return raw.encode("utf-8")
    return bytes(raw)


def decode_record(raw: RawRecord | dict, *, row: int | str, where: str = "row") -> dict[str, Any]:
    """Decode one record to a dict without checking Prodigy's keys (for tasks that are not answered yet)."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, memoryview | bytearray):
        raw = bytes(raw)
    try:  # msgspec gives json.loads' value at twice its speed, or refuses (NaN, lone surrogates): then json's
        task = _decode_json(raw)
    except (msgspec.MsgspecError, UnicodeDecodeError):
        task = None
    if isinstance(task, dict):
        return task
    try:
        task = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidRecord(row, "content", f"not valid JSON ({err})", where=where) from None
    if not isinstance(task, dict):
        raise InvalidRecord(row, "content", f"a JSON {type(task).__name__}, not an object", where=where)
    return task


def check_answer(answer: str) -> None:
    """Require one of Prodigy's answers (for filters)."""
    if answer not in ANSWERS:
        raise ValueError(f"answer {answer!r} is not one of {', '.join(ANSWERS)}")


def check_input(task: Mapping[str, Any], *, row: int | str, where: str = "row") -> None:
    """Require one of Prodigy's input keys (text, image, html, input)."""
    if not any(key in task for key in INPUT_KEYS):
        raise InvalidRecord(row, "text", f"no input key (one of {', '.join(INPUT_KEYS)})", where=where)


def check_hashes(task: Mapping[str, Any], *, row: int | str, where: str = "row") -> None:
    """Require ``_input_hash`` and ``_task_hash`` as integers that fit the BIGINT columns Prodigy stores
    them in."""
    for key in HASH_KEYS:
        if key not in task:
            raise InvalidRecord(row, key, "missing", where=where)
        value = task[key]
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidRecord(row, key, f"{value!r} is not an integer", where=where)
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidRecord(row, key, f"{value} is beyond Prodigy's 64-bit hash columns", where=where)


def check_record(task: Mapping[str, Any], *, row: int | str, where: str = "row") -> None:
    """Require what every stored answer has: both hashes, an answer and an input key."""
    check_hashes(task, row=row, where=where)
    if "answer" not in task:
        raise InvalidRecord(row, "answer", "missing", where=where)
    if task["answer"] not in ANSWERS:
        raise InvalidRecord(
            row, "answer", f"{task['answer']!r} is not one of {', '.join(ANSWERS)}", where=where
        )
    check_input(task, row=row, where=where)


def parse_record(raw: RawRecord | dict, *, row: int | str, where: str = "row") -> dict[str, Any]:
    """Decode and check one stored Prodigy answer; raise :class:`InvalidRecord` naming row and field."""
    task = decode_record(raw, row=row, where=where)
    check_record(task, row=row, where=where)
    return task


# The keys the checks and summaries read. Decoding only these (msgspec skips, but still validates, the rest,
# such as the token lists that make up most of an NER task) is several times faster than json.loads.
# Spans and accepted options decode to tuples of hashable values, so that RecordSummary.add_scanned counts a
# record with one dict update.
class _SpanLabel(msgspec.Struct, frozen=True):
    label: str | None = None  # other label types take the json path, whose spans are dicts


class _RecordKeys(TypedDict, total=False):
    _input_hash: int
    _task_hash: int
    answer: Any
    text: msgspec.Raw  # the input keys (INPUT_KEYS): checked for presence, never decoded
    image: msgspec.Raw
    html: msgspec.Raw
    input: msgspec.Raw
    label: Any
    spans: tuple[_SpanLabel, ...]
    options: list[msgspec.Raw]
    accept: tuple[Any, ...]
    _annotator_id: Any
    _session_id: Any


# Typed as the plain dict it returns at run time, which the checks and summaries read like any record.
_decode_record_keys: Callable[[bytes], dict[str, Any]] = msgspec.json.Decoder(_RecordKeys).decode  # type: ignore[assignment]


def scan_record(raw: RawRecord, *, row: int | str, where: str = "row") -> dict[str, Any]:
    """Check a stored answer exactly as :func:`parse_record` does, returning only the keys checks read
    (spans as objects with a ``label`` attribute, not dicts; :func:`record_labels` reads both).

    Whatever the fast decoder does not take (a type it does not expect, NaN, invalid UTF-8 in skipped text)
    goes through :func:`parse_record`, so the outcome and the error message are always the same.
    """
    if raw.__class__ is not bytes:
        raw = as_bytes(raw)
    try:
        if not raw.isascii():
            raw.decode("utf-8")
        keys = _decode_record_keys(raw)
    except (msgspec.MsgspecError, UnicodeDecodeError):
        return parse_record(raw, row=row, where=where)
    # The decoder already made both hashes integers; the common case is settled without check_record's walk.
    if (
        "_task_hash" not in keys
        or "_input_hash" not in keys
        or keys.get("answer") not in ANSWERS
        or not (
            INT64_MIN <= keys["_input_hash"] <= INT64_MAX and INT64_MIN <= keys["_task_hash"] <= INT64_MAX
        )
    ):
        check_record(keys, row=row, where=where)
    elif "text" not in keys and keys.keys().isdisjoint(INPUT_KEYS):
        check_input(keys, row=row, where=where)
    return keys


TASK_KEYS = ("spans", "label", "options")


def _hash32(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=4).digest(), "big", signed=True)


def set_hashes(task: dict[str, Any]) -> dict[str, Any]:
    """Give a new task Prodigy's two hashes (signed 32-bit) unless it has both already; returns the task.

    As in Prodigy, ``_input_hash`` covers the input keys and ``_task_hash`` the input hash plus the task keys
    (spans, label, options), so the same text with another question is another task. Prodigy treats stored
    hashes as opaque, so any stable hash works for tasks that enter Prodigy through this project.
    """
    if isinstance(task.get("_input_hash"), int) and isinstance(task.get("_task_hash"), int):
        return task
    inputs = {key: task[key] for key in INPUT_KEYS if key in task}
    task["_input_hash"] = _hash32(json.dumps(inputs, sort_keys=True, ensure_ascii=False))
    questions = {key: task[key] for key in TASK_KEYS if key in task}
    task["_task_hash"] = _hash32(
        f"{task['_input_hash']}:{json.dumps(questions, sort_keys=True, ensure_ascii=False)}"
    )
    return task


def read_task_source(
    path: Path | str, *, source_format: str | None = None, text_column: str = "text"
) -> list[dict[str, Any]]:
    """Tasks from a JSONL, CSV or plain-text file, with hashes; all bad lines are named in one
    :class:`InvalidRecords`.

    A CSV row becomes ``{"text": <text_column>, "meta": {<the other columns>}}``, a line of plain text
    ``{"text": <line>}``. The format comes from the file suffix (``.jsonl``/``.json``/``.csv``/``.txt``)
    unless ``source_format`` names it.
    """
    path = Path(path)
    source_format = (source_format or path.suffix.lstrip(".")).lower()
    if source_format not in SOURCE_FORMATS:
        raise ValueError(f"{path}: source format {source_format!r} is not one of {', '.join(SOURCE_FORMATS)}")
    errors: list[InvalidRecord] = []
    tasks: list[dict[str, Any]] = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = (
            _csv_tasks(handle, text_column)
            if source_format == "csv"
            else _text_tasks(handle)
            if source_format == "txt"
            else _jsonl_tasks(handle)
        )
        for row in rows:
            if isinstance(row, InvalidRecord):
                errors.append(row)
            else:
                tasks.append(set_hashes(row))
    if errors:
        raise InvalidRecords(str(path), errors)
    return tasks


def _text_tasks(handle: Iterable[str]) -> Iterator[dict[str, Any] | InvalidRecord]:
    for text in handle:
        if text.strip():
            yield {"text": text.rstrip("\r\n")}


def _jsonl_tasks(handle: Iterable[str]) -> Iterator[dict[str, Any] | InvalidRecord]:
    for line, text in enumerate(handle, start=1):
        if not text.strip():
            continue
        try:
            task = decode_record(text, row=line, where="line")
            check_input(task, row=line, where="line")
        except InvalidRecord as err:
            yield err
            continue
        yield task


def _header_shown(names: Sequence[str] | None) -> str:
    """A header's column names, if they look like names; a file without a header has data there, which
    an error message must not repeat (it may be regulated content)."""
    names = list(names or ())
    if names and all(re.fullmatch(r"[A-Za-z_][\w-]{0,39}", n or "") for n in names):
        return str(names)
    return f"(its first line, {len(names)} field(s), does not look like column names: add a header line)"


def _csv_tasks(handle: Iterable[str], text_column: str) -> Iterator[dict[str, Any] | InvalidRecord]:
    reader = csv.DictReader(handle)
    if text_column not in (reader.fieldnames or ()):
        header = _header_shown(reader.fieldnames)
        yield InvalidRecord(1, text_column, f"no such column in the header {header}", where="line")
        return
    for row in reader:
        text = row.pop(text_column)
        if None in row:
            yield InvalidRecord(reader.line_num, "row", "more fields than the header names", where="line")
        elif text is None or not text.strip():
            yield InvalidRecord(reader.line_num, text_column, "empty text", where="line")
        else:
            yield {"text": text, "meta": row}


def record_labels(task: Mapping[str, Any]) -> list[str]:
    """Distinct labels a task carries, in order: span labels, the task ``label``, accepted choice options."""
    if not task.get("spans") and not task.get("options"):  # binary and text classification tasks
        label = task.get("label")
        return [] if label is None else [str(label)]
    labels: dict[str, None] = {}
    for span in _sequence(task.get("spans")):
        label = span.get("label") if isinstance(span, dict) else getattr(span, "label", None)
        if label is not None:
            labels[str(label)] = None
    if task.get("label") is not None:
        labels[str(task["label"])] = None
    if task.get("options"):
        for option_id in _sequence(task.get("accept")):
            labels[str(option_id)] = None
    return list(labels)


def _sequence(value: Any) -> list[Any] | tuple[Any, ...]:
    """A list or tuple as it is; anything else (a number where Prodigy writes a list) as empty."""
    return value if isinstance(value, list | tuple) else ()


def annotator_of(task: Mapping[str, Any]) -> str | None:
    """Who answered: Prodigy's ``_annotator_id`` (named sessions), else the ``_session_id``."""
    annotator = task.get("_annotator_id") or task.get("_session_id")
    return str(annotator) if annotator else None


def sessions_of(tasks: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every annotator (:func:`annotator_of`) who answered in ``tasks``, sorted."""
    return sorted({annotator for annotator in map(annotator_of, tasks) if annotator})


def session_name_in(dataset: str, session: str) -> str:
    """A session's name without its dataset (Prodigy names sessions ``<dataset>-<name>``)."""
    return session.removeprefix(f"{dataset}-")


def dedupe_key(task: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes an example the same as one already stored: its task hash, and for answers the annotator."""
    if "answer" in task:
        return (task["_task_hash"], "answer", annotator_of(task))
    return (task["_task_hash"], "task")


def _sorted_counts(counter: Counter[str]) -> dict[str, int]:
    return dict(sorted(counter.items()))


# What record_labels and annotator_of read, in the order of RecordSummary's shape keys.
_SHAPE_KEYS = ("answer", "spans", "label", "options", "accept", "_annotator_id", "_session_id")
_SHAPE_VALUE_TYPES = frozenset({str, int, type(None)})
MAX_SHAPES = 10_000


def _plain_tuple(values: Any) -> bool:
    return values.__class__ is tuple and all(value.__class__ in _SHAPE_VALUE_TYPES for value in values)


_Group = tuple[Any, tuple[str, ...], str | None]
"""What a summary counts records by: (answer, labels, annotator)."""


class RecordSummary:
    """Running counts over records: total, per answer, per label (tasks carrying it) and per annotator.

    Records are counted by (answer, labels, annotator) and the counts split out at the end: one dict update
    per record keeps summaries cheap enough to run inside a streaming export. Records from
    :func:`scan_record` are counted by their raw shape, and labels are worked out once per distinct shape.
    """

    def __init__(self) -> None:
        self._by_group: dict[_Group, int] = {}
        self._by_shape: dict[tuple[Any, ...], int] = {}

    def add(self, task: Mapping[str, Any], count: int = 1) -> None:
        group = (task.get("answer"), tuple(record_labels(task)), annotator_of(task))
        self._by_group[group] = self._by_group.get(group, 0) + count

    def add_scanned(self, keys: dict[str, Any]) -> None:
        """Count a record returned by :func:`scan_record` (the export's hot path)."""
        get = keys.get
        label, accept = get("label"), get("accept")
        annotator, session = get("_annotator_id"), get("_session_id")
        # A shape is only a key when equal values print alike: 1, 1.0 and True are one dict key, three labels.
        if (
            label.__class__ not in _SHAPE_VALUE_TYPES
            or annotator.__class__ not in _SHAPE_VALUE_TYPES
            or session.__class__ not in _SHAPE_VALUE_TYPES
            or (accept is not None and not _plain_tuple(accept))
        ):
            self.add(keys)
            return
        shape = (get("answer"), get("spans"), label, bool(get("options")), accept, annotator, session)
        try:
            self._by_shape[shape] = self._by_shape.get(shape, 0) + 1
        except TypeError:  # spans from the JSON fallback are lists of dicts
            self.add(keys)
            return
        if len(self._by_shape) > MAX_SHAPES:  # many distinct span sequences: keep memory flat
            self._fold_shapes()

    def _fold_shapes(self) -> None:
        for shape, count in self._by_shape.items():
            self.add(dict(zip(_SHAPE_KEYS, shape, strict=True)), count)
        self._by_shape.clear()

    @property
    def _groups(self) -> dict[_Group, int]:
        self._fold_shapes()
        return self._by_group

    def _count(self, values_of: Callable[[_Group], Iterable[Any]]) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for group, count in self._groups.items():
            counts.update({str(value): count for value in values_of(group) if value is not None})
        return _sorted_counts(counts)

    @property
    def total(self) -> int:
        return sum(self._groups.values())

    @property
    def by_answer(self) -> dict[str, int]:
        return self._count(lambda group: (group[0],))

    @property
    def by_label(self) -> dict[str, int]:
        return self._count(lambda group: group[1])

    @property
    def by_annotator(self) -> dict[str, int]:
        return self._count(lambda group: (group[2],))

    def as_dict(self) -> RecordCounts:
        return RecordCounts(
            total=self.total,
            by_answer=self.by_answer,
            by_label=self.by_label,
            by_annotator=self.by_annotator,
        )


class AnnotationProgress:
    """Who answered what in a dataset: answers per annotator and distinct annotators per input
    (``per_input=False``: not the latter, which holds every input, for a count that only needs the former)."""

    def __init__(self, *, per_input: bool = True) -> None:
        self.per_input = per_input
        self.reset()

    def reset(self) -> None:
        self.total = 0
        self.by_answer: Counter[str] = Counter()
        self.annotators: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.annotators_by_input: defaultdict[int, set[str]] = defaultdict(set)
        self.invalid: list[int | str] = []
        self.last_example_id: int | None = None
        """The last example read, where an incremental read continues."""
        self.last_task_hash: int | None = None
        """That example's task hash (None when it was invalid): a reused id shows as another hash."""
        self.source: tuple[Any, ...] = ()
        """Which dataset was read (set by the reader): one dropped and created again starts over."""

    def add(self, task: Mapping[str, Any]) -> None:
        self.total += 1
        answer = str(task["answer"])
        self.by_answer[answer] += 1
        annotator = annotator_of(task)
        inputs = self.annotators_by_input[task["_input_hash"]] if self.per_input else None
        if annotator is not None:
            self.annotators[annotator][answer] += 1
            if inputs is not None:
                inputs.add(annotator)

    def inputs_with(self, annotators: int) -> int:
        """How many inputs have answers from at least this many distinct annotators."""
        return sum(1 for names in self.annotators_by_input.values() if len(names) >= annotators)

    def as_dict(self) -> dict[str, Any]:
        spread = Counter(len(names) for names in self.annotators_by_input.values())
        return {
            "answers": self.total,
            "by_answer": _sorted_counts(self.by_answer),
            "annotators": {
                name: {"answers": sum(counts.values()), "by_answer": _sorted_counts(counts)}
                for name, counts in sorted(self.annotators.items())
            },
            "inputs": len(self.annotators_by_input),
            "inputs_by_annotator_count": {str(count): spread[count] for count in sorted(spread)},
            "invalid": len(self.invalid),
            "invalid_rows": self.invalid[:20],
        }


@dataclass(frozen=True)
class BatchTarget:
    """When an annotation batch is done: ``min_answers`` answers in the dataset, and/or every input answered
    by ``annotators_per_input`` distinct annotators (over at least ``min_inputs`` inputs, so that the first
    few answers of a batch do not count as every input being done)."""

    min_answers: int | None = None
    annotators_per_input: int | None = None
    min_inputs: int = 1

    def __post_init__(self) -> None:
        if self.min_answers is None and self.annotators_per_input is None:
            raise ValueError("a batch target needs min_answers, annotators_per_input or both")
        for name in ("min_answers", "annotators_per_input", "min_inputs"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"batch target {name} must be a positive integer, not {value!r}")

    @classmethod
    def from_rendered(cls, min_answers: Any, annotators_per_input: Any, min_inputs: Any = 1) -> BatchTarget:
        """A target from rendered template values: ``"12"`` is 12, ``""`` and ``"None"`` are unset."""
        inputs = from_rendered(min_inputs, int, name="batch target min_inputs")
        return cls(
            from_rendered(min_answers, int, name="batch target min_answers"),
            from_rendered(annotators_per_input, int, name="batch target annotators_per_input"),
            1 if inputs is None else inputs,
        )

    def reached(self, counts: Mapping[str, Any]) -> bool:
        """Whether counts from ``ProdigyHook.batch_counts`` meet the target."""
        if self.min_answers is not None and counts["answers"] < self.min_answers:
            return False
        if self.annotators_per_input is not None:
            return counts["inputs"] >= self.min_inputs and counts["inputs_done"] == counts["inputs"]
        return True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def standard_json(value: Any, path: str = "") -> tuple[Any, list[str]]:
    """``value`` as standard JSON can carry it, and the paths where that changed it.

    Python's json module writes and reads NaN and Infinity; no other JSON parser does. A model's score
    of NaN stored in Prodigy would make a release unreadable elsewhere, so the rule is: every NaN,
    Infinity or -Infinity becomes null, and the caller names where (``meta.score``, ``spans[2].score``).
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None, [path or "(the value)"]
    if isinstance(value, dict):
        changed: list[str] = []
        cleaned: dict[str, Any] = {}
        for key, item in value.items():
            cleaned[key], where = standard_json(item, f"{path}.{key}" if path else str(key))
            changed += where
        return (cleaned if changed else value), changed
    if isinstance(value, list):
        changed, items = [], []
        for index, item in enumerate(value):
            clean, where = standard_json(item, f"{path}[{index}]")
            items.append(clean)
            changed += where
        return (items if changed else value), changed
    return value, []


_sorted_json: Callable[[Any], bytes] = msgspec.json.Encoder(order="sorted").encode
_ordered_json: Callable[[Any], bytes] = msgspec.json.Encoder().encode
_msgpack: Callable[[Any], bytes] = msgspec.msgpack.Encoder().encode
_NON_FINITE_FLOAT64 = re.compile(rb"\xcb[\x7f\xff][\xf0-\xff]")
"""A msgpack float64 (marker 0xcb) with every exponent bit set: NaN, Infinity or -Infinity."""


def standard_json_line(row: Any, *, sort_keys: bool = True) -> tuple[bytes, list[str]]:
    """``row`` as one line of standard JSON (keys sorted unless ``sort_keys`` is false, UTF-8, no spaces)
    by the rule of :func:`standard_json`, and the paths where the rule changed it.

    msgspec writes the line several times faster than ``json.dumps``, but would write NaN as null without
    saying where: each row is first packed as msgpack (a few microseconds), where every float is a float64,
    and only a row with one that may not be finite is walked value by value. What msgspec cannot write (a
    lone surrogate, an integer beyond 64 bits) is written by ``json.dumps``, escaped to ASCII.
    """
    encode = _sorted_json if sort_keys else _ordered_json
    try:
        if _NON_FINITE_FLOAT64.search(_msgpack(row)) is None:
            return encode(row), []
    except (TypeError, ValueError, OverflowError):
        pass
    clean, changed = standard_json(row)
    try:
        return encode(clean), changed
    except (TypeError, ValueError, OverflowError):
        line = json.dumps(clean, sort_keys=sort_keys, allow_nan=False, separators=(",", ":"))
        return line.encode("ascii"), changed


def refuse_non_standard_json(raw: bytes | str, *, row: int | str, where: str = "row") -> None:
    """Raise :class:`InvalidRecord` when a JSON line holds NaN or Infinity (see :func:`standard_json`)."""

    def refuse(constant: str) -> Any:
        raise InvalidRecord(
            row, "content", f"{constant} is not standard JSON (write null instead)", where=where
        )

    json.loads(raw, parse_constant=refuse)


def dumps_compact(task: Any) -> str:
    """One-line JSON the way Prodigy writes JSONL (compact, non-ASCII kept)."""
    return json.dumps(task, ensure_ascii=False, separators=(",", ":"))
