"""Reading the pages people read the way a test can: the numbers behind a page's SVG charts."""

from __future__ import annotations

from html.parser import HTMLParser


class _Charts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.charts: dict[str, dict[str, float]] = {}
        self._figure: str | None = None
        self.svgs = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "figure" and attributes.get("id"):
            self._figure = attributes["id"]
            self.charts[self._figure] = {}
        elif tag == "svg":
            self.svgs += 1
        elif tag == "rect" and self._figure and "bar" in (attributes.get("class") or "").split():
            value = attributes.get("data-value")
            self.charts[self._figure][attributes.get("data-label") or ""] = (
                float(value) if value else float("nan")
            )

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self._figure = None


def chart_values(html: str) -> dict[str, dict[str, float]]:
    """``{chart id: {bar label: value}}`` of every chart (``<figure id>`` holding an inline SVG) of a page."""
    parser = _Charts()
    parser.feed(html)
    return parser.charts


def svg_count(html: str) -> int:
    parser = _Charts()
    parser.feed(html)
    return parser.svgs
