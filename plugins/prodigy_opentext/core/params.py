"""Templated operator fields back to values.

With ``render_template_as_native_obj=True`` (every DAG of the project) a template renders to the value
itself; without it, to a string. Operators meant for any DAG accept both, through this one function.
"""

from __future__ import annotations

import ast
from typing import Any, TypeVar, overload

T = TypeVar("T", int, float)
UNSET = ("", "None")
"""What an unset optional value renders to as a string (``{{ params.x or None }}``, an empty field)."""


@overload
def from_rendered(value: Any, kind: type[T], *, name: str) -> T | None: ...
@overload
def from_rendered(value: Any, kind: type[list], *, name: str) -> list[Any] | None: ...
def from_rendered(value: Any, kind: type, *, name: str) -> Any:
    """``value`` as an ``int``, a ``float`` or a ``list``, or None when unset; a bad value names ``name``.

    Native values pass through (an ``int`` is also a ``float``); strings are parsed: ``"12"``, ``"0.2"``,
    a list literal ``"['ORG', 'PERSON']"`` or comma-separated names ``"ORG, PERSON"``.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text in UNSET:
            return None
        return _parse(text, kind, name=name, original=value)
    if kind is list and isinstance(value, list | tuple):
        return list(value)
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(f"{name} must be {_describe(kind)}, not {value!r}")


def _parse(text: str, kind: type, *, name: str, original: str) -> Any:
    if kind is list:
        if not text.startswith("["):
            return [part.strip() for part in text.split(",") if part.strip()]
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError) as err:
            raise ValueError(f"{name} {original!r} is not a list ({err})") from None
        if not isinstance(parsed, list):
            raise ValueError(f"{name} {original!r} is not a list")
        return [item.strip() if isinstance(item, str) else item for item in parsed]
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{name} must be {_describe(kind)}, not {original!r}") from None


def _describe(kind: type) -> str:
    return {int: "a whole number", float: "a number", list: "a list"}[kind]
