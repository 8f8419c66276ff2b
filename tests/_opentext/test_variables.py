"""Typed process variables keep their types both ways."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from prodigy_opentext._opentext.variables import from_rest_variables, to_rest_variables


def test_variables_keep_their_types_both_ways() -> None:
    moment = datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=UTC)
    values = {"ok": True, "n": 3, "big": 2**40, "score": 0.5, "name": "x", "due": moment, "meta": {"a": [1]}}
    typed = to_rest_variables(values)
    assert [item["type"] for item in typed] == [
        "boolean",
        "integer",
        "long",
        "double",
        "string",
        "date",
        "json",
    ]
    assert typed[5]["value"] == "2024-05-01T12:30:15.250+0000"
    assert from_rest_variables(typed) == values
    assert from_rest_variables([{"name": "j", "type": "json", "value": '{"b": 2}'}]) == {"j": {"b": 2}}
    with pytest.raises(TypeError, match="'blob'"):
        to_rest_variables({"blob": object()})
