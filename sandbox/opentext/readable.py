"""Process and task variables as a reviewer reads them: text, lists and tables, never JSON.

Every inbox page shows variable values through :func:`readable`: a dict becomes a two-column table, a
list of records a table with one column per field, a list of plain values a bullet list, and a string
holding JSON (as some clients store structured values) is shown as the value it holds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape
from typing import Any

MAX_ROWS = 50
"""Rows of one list or table shown; the rest are counted, so a large sample does not bury the page."""


def _json_held(text: str) -> Any:
    """The object or array a string holds as JSON, or None when it is plain text."""
    if not text.strip().startswith(("{", "[")):
        return None
    try:
        held = json.loads(text)
    except ValueError:
        return None
    return held if isinstance(held, dict | list) else None


def label(key: Any) -> str:
    """A field name as a heading: ``by_label`` reads ``by label``."""
    return str(key).replace("_", " ")


def _more(shown: int, total: int) -> str:
    return f'<p class="more">… and {total - shown} more</p>' if total > shown else ""


def _record_table(records: list[Mapping[str, Any]], total: int) -> str:
    columns = list(dict.fromkeys(key for record in records for key in record))
    head = "".join(f"<th>{escape(label(c))}</th>" for c in columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{readable(r.get(c))}</td>" for c in columns) + "</tr>" for r in records
    )
    return f'<table class="records"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>' + _more(
        len(records), total
    )


def readable(value: Any) -> str:
    """``value`` as escaped HTML: scalars as text, dicts and lists as tables and lists, JSON text too."""
    if isinstance(value, str):
        held = _json_held(value)
        return readable(held) if held is not None else f'<span class="text">{escape(value)}</span>'
    if value is None:
        return '<span class="none">—</span>'
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return escape(str(round(value, 4)))
    if isinstance(value, Mapping):
        if not value:
            return '<span class="none">(none)</span>'
        rows = "".join(
            f"<tr><th>{escape(label(k))}</th><td>{readable(v)}</td></tr>"
            for k, v in list(value.items())[:MAX_ROWS]
        )
        return f'<table class="fields"><tbody>{rows}</tbody></table>' + _more(
            min(len(value), MAX_ROWS), len(value)
        )
    if isinstance(value, list | tuple):
        if not value:
            return '<span class="none">(none)</span>'
        shown = list(value)[:MAX_ROWS]
        if all(isinstance(item, Mapping) for item in shown):
            return _record_table(shown, len(value))
        items = "".join(f"<li>{readable(item)}</li>" for item in shown)
        return f'<ul class="values">{items}</ul>' + _more(len(shown), len(value))
    return escape(str(value))
