"""OpenText's HAL list envelopes and their paging (``offset``, ``count``, ``page.totalElements``)."""

from __future__ import annotations

from typing import Any

from prodigy_opentext.exceptions import OpenTextError


def embedded_items(body: Any) -> list[dict[str, Any]]:
    """The items of a HAL list ``{"_embedded": {"<collection>": [...]}, "page": {...}}``."""
    if not isinstance(body, dict) or not ("_embedded" in body or "page" in body):
        raise OpenTextError(f"expected a HAL list envelope with '_embedded', got {str(body)[:200]}")
    lists = [value for value in (body.get("_embedded") or {}).values() if isinstance(value, list)]
    if len(lists) > 1:
        raise OpenTextError(f"HAL envelope holds more than one collection: {sorted(body['_embedded'])}")
    return lists[0] if lists else []


def next_page_offset(body: Any, offset: int, received: int, count: int) -> int | None:
    """Offset of the next page, or None after the last one (by ``page.totalElements`` when present)."""
    total = (body.get("page") or {}).get("totalElements")
    following = offset + received
    if received == 0:
        return None
    if total is not None:
        return following if following < int(total) else None
    return following if received >= count else None
