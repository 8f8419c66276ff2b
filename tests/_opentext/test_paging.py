"""HAL list envelopes and their paging."""

from __future__ import annotations

import pytest

from prodigy_opentext._opentext.paging import embedded_items, next_page_offset
from prodigy_opentext.exceptions import OpenTextError


def test_envelope_items_and_paging() -> None:
    body = {"_embedded": {"tasks": [{"id": "1"}, {"id": "2"}]}, "page": {"totalElements": 5}}
    assert [item["id"] for item in embedded_items(body)] == ["1", "2"]
    assert next_page_offset(body, 0, 2, 2) == 2
    assert next_page_offset(body, 4, 1, 2) is None
    assert embedded_items({"page": {"totalElements": 0}}) == []
    with pytest.raises(OpenTextError, match="HAL"):
        embedded_items([{"id": "1"}])
