"""Task JSON as Prodigy handles it: reading JSONL streams and setting the input and task hashes.

Hashes follow Prodigy's ``set_hashes``: ``_input_hash`` is a murmurhash of the task's input keys,
``_task_hash`` a murmurhash of the input hash plus the task keys, both signed 32-bit integers (Explosion's
``murmurhash``, the package Prodigy uses). Keys that only say where a suggestion came from (score, model, ...)
are left out so that a re-scored task keeps its hash. Tasks that already carry both hashes keep them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import murmurhash

from sandbox.prodigy.errors import ProdigyError

INPUT_KEYS = ("text", "image", "html", "input")
TASK_KEYS = ("spans", "label", "options")
IGNORED_KEYS = frozenset(
    {"score", "rank", "model", "source", "pattern", "priority", "_view_id", "_session_id", "_annotator_id"}
)
INPUT_HASH = "_input_hash"
TASK_HASH = "_task_hash"
ANSWERS = ("accept", "reject", "ignore")


def dumps(task: Any) -> str:
    """Compact JSON with non-ASCII text kept as is, the way Prodigy writes tasks and JSONL."""
    return json.dumps(task, ensure_ascii=False, separators=(",", ":"))


def _without_ignored(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_ignored(item) for key, item in value.items() if key not in IGNORED_KEYS}
    if isinstance(value, list):
        return [_without_ignored(item) for item in value]
    return value


def _hash(values: dict[str, Any], prefix: str = "") -> int:
    return murmurhash.hash(prefix + json.dumps(_without_ignored(values), sort_keys=True, ensure_ascii=False))


def input_hash(task: dict[str, Any]) -> int:
    """Hash of the input keys; a task without any hashes on everything but answer and underscore keys."""
    values = {key: task[key] for key in INPUT_KEYS if key in task}
    if not values:
        values = {key: value for key, value in task.items() if key != "answer" and not key.startswith("_")}
    return _hash(values)


def task_hash(task: dict[str, Any], input_hash_value: int) -> int:
    """Hash of the input hash plus the task keys (spans, label, options)."""
    return _hash({key: task[key] for key in TASK_KEYS if key in task}, prefix=str(input_hash_value))


def set_hashes(task: dict[str, Any], overwrite: bool = False) -> dict[str, Any]:
    """Add ``_input_hash`` and ``_task_hash`` in place unless both are there already (or ``overwrite``)."""
    if overwrite or INPUT_HASH not in task or TASK_HASH not in task:
        task[INPUT_HASH] = input_hash(task)
        task[TASK_HASH] = task_hash(task, task[INPUT_HASH])
    return task


def read_jsonl(path: Path | str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, task)`` for each non-blank line; a line that is not a JSON object is an error."""
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as err:
        raise ProdigyError(f"cannot read {path}: {err.strerror}") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                task = json.loads(line)
            except ValueError as err:
                raise ProdigyError(f"{path}, line {number}: not valid JSON ({err})") from None
            if not isinstance(task, dict):
                raise ProdigyError(f"{path}, line {number}: a JSON {type(task).__name__}, not an object")
            yield number, task
