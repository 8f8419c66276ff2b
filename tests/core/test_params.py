"""Templated operator fields back to values: native values pass, strings are parsed, bad ones are named."""

from __future__ import annotations

import re

import pytest

from prodigy_opentext.core.params import from_rendered


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        (12, int, 12),
        (2.0, int, 2),
        ("12", int, 12),
        (" 7 ", int, 7),
        ("", int, None),
        ("None", int, None),
        (None, int, None),
        (0.2, float, 0.2),
        (1, float, 1.0),
        ("0.05", float, 0.05),
        (["ORG", "PERSON"], list, ["ORG", "PERSON"]),
        (("ORG",), list, ["ORG"]),
        ("['ORG', 'PERSON']", list, ["ORG", "PERSON"]),
        ("ORG, PERSON", list, ["ORG", "PERSON"]),
        ("", list, None),
    ],
)
def test_values_come_back_as_their_kind(value, kind, expected) -> None:
    result = from_rendered(value, kind, name="field")
    assert result == expected
    assert expected is None or type(result) is kind


@pytest.mark.parametrize(
    ("value", "kind", "message"),
    [
        ("two", int, "min_answers must be a whole number, not 'two'"),
        (2.5, int, "min_answers must be a whole number, not 2.5"),
        (True, int, "min_answers must be a whole number, not True"),
        ("a tenth", float, "min_answers must be a number, not 'a tenth'"),
        ("['ORG'", list, "min_answers \"['ORG'\" is not a list"),
        ("[1, 2][0]", list, "min_answers '[1, 2][0]' is not a list"),
        (3, list, "min_answers must be a list, not 3"),
    ],
)
def test_a_bad_value_is_named_with_its_field(value, kind, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        from_rendered(value, kind, name="min_answers")
