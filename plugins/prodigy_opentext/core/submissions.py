"""What reviewers submit through an OpenText task form: one entry per item of what they were shown,
checked as a whole so the message sending the task back names every problem at once."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prodigy_opentext.exceptions import SubmissionInvalid


@dataclass(frozen=True)
class PerItemForm:
    """How one form's submission reads: its variable, the words its messages use, the error it raises."""

    variable: str
    entry: str  # "decision"
    subject: str  # "item"
    shown_in: str  # "this case"
    missing: str  # "has no decision"
    twice: str  # "decided twice"
    error: type[SubmissionInvalid]


def per_item_entries(
    form: PerItemForm,
    submitted: Any,
    ids: Iterable[str],
    problem_of: Callable[[str, Mapping[str, Any]], str | None],
) -> dict[str, Mapping[str, Any]]:
    """The submitted entries by item id (``item`` of each entry), one for every id in ``ids``.

    Raises ``form.error`` naming each problem: nothing submitted (or not JSON), an entry that is not an
    object, an item not shown, an item left out or given twice, and what ``problem_of(id, entry)`` finds.
    """
    if isinstance(submitted, str):
        try:
            submitted = json.loads(submitted)
        except ValueError:
            raise form.error([f"{form.variable} is not JSON: {submitted[:80]!r}"]) from None
    if not isinstance(submitted, list) or not submitted:
        raise form.error([f"no {form.entry}s: {form.variable} must hold one {form.entry} per {form.subject}"])
    expected = list(ids)
    shown = set(expected)
    taken: dict[str, Mapping[str, Any]] = {}
    troubled: set[str] = set()
    problems = []
    for number, entry in enumerate(submitted, start=1):
        if not isinstance(entry, Mapping):
            problems.append(f"{form.entry} {number} is not an object")
            continue
        key = str(entry.get("item"))
        if key not in shown:
            problems.append(f"{form.entry} {number}: {form.subject} {key!r} is not in {form.shown_in}")
        elif key in taken or key in troubled:
            problems.append(f"{form.entry} {number}: {form.subject} {key!r} is {form.twice}")
        elif problem := problem_of(key, entry):
            problems.append(f"{form.entry} {number} ({form.subject} {key}): {problem}")
            troubled.add(key)
        else:
            taken[key] = entry
    problems += [
        f"{form.subject} {key} {form.missing}" for key in expected if key not in taken and key not in troubled
    ]
    if problems:
        raise form.error(problems)
    return taken
