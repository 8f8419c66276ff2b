"""Self-contained HTML pages people read: review reports, dataset cards, the governance report.

One page shell and inline SVG charts, written by hand rather than by a plotting library: the pages need
bar charts only, must open the same from an OpenText attachment, a release folder or an e-mail (no script,
no font, no network), and must be byte-for-byte reproducible, since a release's manifest records its
card's sha256 and an equal rerun must write an equal card. Every bar carries its label and value as
``data-label`` / ``data-value`` and a ``<title>`` tooltip, so a test (or a screen reader) can read the
numbers behind the picture.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape as _escape
from typing import Any

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2733;background:#f6f7f9}
main{max-width:72rem;margin:0 auto;padding:1.5rem 2rem 3rem}
h1{font-size:1.6rem;margin:.2rem 0}h2{font-size:1.2rem;margin:2rem 0 .6rem;border-bottom:1px solid #d5dbe3}
.subtitle{color:#52606d;margin:0 0 1rem}
table{border-collapse:collapse;margin:.4rem 0 1rem;background:#fff}
th,td{border:1px solid #d5dbe3;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#eef1f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.facts{display:flex;flex-wrap:wrap;gap:.8rem;margin:.6rem 0}
.fact{background:#fff;border:1px solid #d5dbe3;border-radius:6px;padding:.5rem .9rem;min-width:9rem}
.fact b{display:block;font-size:1.3rem}.fact span{color:#52606d;font-size:.85rem}
.ok{color:#1a7f37}.bad{color:#b42318}.muted{color:#6b7785}
figure{margin:.4rem 0 1.2rem}figcaption{font-weight:600;margin-bottom:.3rem}
mark{background:#fde68a;padding:0 .15rem;border-radius:3px}mark small{color:#7c5a00;font-weight:600}
.item{background:#fff;border:1px solid #d5dbe3;border-radius:6px;padding:.5rem .8rem;margin:.4rem 0}
"""
BAR_COLOUR = "#3b6fb6"
NO_VALUE = "\N{EN DASH}"


def escape(value: Any) -> str:
    """Text for HTML: ``None`` shows as a dash, everything else as its string, escaped."""
    return NO_VALUE if value is None else _escape(str(value), quote=True)


def number(value: float | int | None, digits: int = 3) -> str:
    """A figure as people read it: integers as they are, fractions to ``digits`` places, None as a dash."""
    if value is None:
        return NO_VALUE
    if isinstance(value, int) or (float(value).is_integer() and abs(value) >= 1):
        return f"{int(value):,}"
    return f"{value:.{digits}f}"


def percent(value: float | None) -> str:
    return NO_VALUE if value is None else f"{value * 100:.1f} %"


def moment(timestamp: str | None) -> str:
    """An ISO 8601 time (OpenText's ``+0000`` or Python's ``+00:00``) as people read it, in UTC; text
    that is no time is shown as it is, None as a dash."""
    if not timestamp:
        return NO_VALUE
    try:
        parsed = datetime.fromisoformat(timestamp)
    except ValueError:
        return timestamp
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def page(title: str, body: Iterable[str], *, subtitle: str = "", style: str = "") -> str:
    """A whole HTML document: the title as heading, the subtitle under it, then the body's parts;
    ``style``: rules a page adds to the shared ones."""
    parts = "\n".join(body)
    lead = f'<p class="subtitle">{escape(subtitle)}</p>' if subtitle else ""
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{STYLE}{style}</style></head>\n"
        f"<body><main><h1>{escape(title)}</h1>{lead}\n{parts}\n</main></body></html>\n"
    )


def section(heading: str, *parts: str) -> str:
    return f"<section><h2>{escape(heading)}</h2>\n" + "\n".join(parts) + "\n</section>"


def facts(items: Mapping[str, str]) -> str:
    """Key figures as tiles: ``{caption: already formatted value}``."""
    tiles = "".join(
        f'<div class="fact"><b>{escape(value)}</b><span>{escape(caption)}</span></div>'
        for caption, value in items.items()
    )
    return f'<div class="facts">{tiles}</div>'


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, numeric: Iterable[int] = ()) -> str:
    """A table of already formatted cells (escaped here); ``numeric`` columns are right-aligned.

    A cell that is an :class:`Html` instance is put in as it is (a link, a mark-up of spans).
    """
    right = set(numeric)
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            ('<td class="num">' if i in right else "<td>")
            + (cell if isinstance(cell, Html) else escape(cell))
            + "</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class Html(str):
    """Mark-up already escaped, put into a table cell as it is."""


def link(href: str, text: str) -> Html:
    return Html(f'<a href="{escape(href)}">{escape(text)}</a>')


def bar_chart(
    caption: str,
    values: Mapping[str, float | int | None],
    *,
    scale_max: float | None = None,
    formatter: Any = number,
    chart_id: str = "",
) -> str:
    """A horizontal bar chart as inline SVG, one bar per entry in the mapping's order.

    ``scale_max`` fixes the axis (1.0 for agreement figures, so a bar's length means the same on every
    page); by default the longest bar fills the width. A ``None`` value draws no bar and says "n/a".
    """
    if not values:
        nothing = '<p class="muted">nothing to show</p>'
        return f"<figure><figcaption>{escape(caption)}</figcaption>{nothing}</figure>"
    label_width, bar_width, row_height = 190, 420, 22
    present = [float(v) for v in values.values() if v is not None]
    top = scale_max if scale_max is not None else max([*present, 0.0])
    height = row_height * len(values) + 8
    rows = []
    for i, (label, value) in enumerate(values.items()):
        y = 4 + i * row_height
        shown = "n/a" if value is None else formatter(value)
        length = 0.0 if value is None or top <= 0 else max(0.0, float(value)) / top * bar_width
        data_value = "" if value is None else repr(float(value)) if isinstance(value, float) else str(value)
        rows.append(
            f'<text x="{label_width - 6}" y="{y + 15}" text-anchor="end" font-size="12">'
            f"{escape(label)}</text>"
            f'<rect class="bar" x="{label_width}" y="{y + 3}" width="{length:.1f}" height="{row_height - 6}" '
            f'fill="{BAR_COLOUR}" data-label="{escape(label)}" data-value="{escape(data_value)}">'
            f"<title>{escape(label)}: {escape(shown)}</title></rect>"
            f'<text x="{label_width + length + 6:.1f}" y="{y + 15}" font-size="12">{escape(shown)}</text>'
        )
    width = label_width + bar_width + 90
    identity = f' id="{escape(chart_id)}"' if chart_id else ""
    return (
        f"<figure{identity}><figcaption>{escape(caption)}</figcaption>"
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(caption)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        + "".join(rows)
        + "</svg></figure>"
    )


def marked_text(text: str, spans: Iterable[Mapping[str, Any]]) -> Html:
    """A text with its labelled spans drawn as ``<mark>`` (overlapping or out-of-range spans are skipped:
    the validation names those, the page only shows)."""
    pieces, cursor = [], 0
    for span in sorted(spans, key=lambda s: (s.get("start") or 0, s.get("end") or 0)):
        start, end = span.get("start"), span.get("end")
        if not isinstance(start, int) or not isinstance(end, int) or start < cursor or end > len(text):
            continue
        pieces.append(escape(text[cursor:start]))
        pieces.append(f"<mark>{escape(text[start:end])} <small>{escape(span.get('label'))}</small></mark>")
        cursor = end
    pieces.append(escape(text[cursor:]))
    return Html("".join(pieces))
