"""The JUEL evaluator on the expressions Flowable and OpenText models contain (pure function tests)."""

from __future__ import annotations

import pytest

from sandbox.opentext.juel import JuelError, UnknownPropertyError, evaluate, evaluate_condition

VARIABLES = {
    "outcome": "approved",
    "approvalStatus": "rejected",
    "regulated": True,
    "doc": {"properties": {"value": 1500, "owner": {"name": "Ada"}}},
    "items": [10, 20],
    "count_text": "5",
    "nothing": None,
    "manager_group": "managers",
    "escalation_after": "PT4H",
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("${outcome == 'approved'}", True),
        ('${approvalStatus == "rejected"}', True),
        ("${approvalStatus eq 'approved'}", False),
        ("${regulated}", True),
        ("${!regulated}", False),
        ("${not regulated}", False),
        ("${doc.properties.value > 1000}", True),
        ("${doc.properties.value gt 2000}", False),
        ("${doc['properties'].owner.name == 'Ada'}", True),
        ("${outcome == 'approved' && regulated}", True),
        ("${outcome == 'rejected' || !regulated}", False),
        ("${outcome ne 'approved' or regulated and doc.properties.value lt 2000}", True),
        ("${count_text > 4}", True),
        ("${count_text == 5}", True),
        ("${nothing == null}", True),
        ("${empty nothing}", True),
        ("${doc.properties.missing == null}", True),
        ("${items[1] - items[0] == 10}", True),
        ("${1.5e1 ge 15 && 7 mod 3 == 1 && -7 % 3 == -1}", True),
        ("${(1 + 2) * 3 le 9}", True),
    ],
)
def test_conditions(expression, expected):
    assert evaluate_condition(expression, VARIABLES) is expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("${manager_group}", "managers"),
        ("PT4H", "PT4H"),
        ("${escalation_after}", "PT4H"),
        ("group-${manager_group}-${regulated}", "group-managers-true"),
        ("${regulated ? 'fast' : 'slow'}", "fast"),
        ("${doc.properties.value div 2}", 750.0),
        ("${items}", [10, 20]),
        ("${nothing}", None),
    ],
)
def test_values_keep_their_type(expression, expected):
    assert evaluate(expression, VARIABLES) == expected


def test_unknown_variable_is_named():
    with pytest.raises(
        UnknownPropertyError, match=r"Unknown property used in expression: \$\{regulatd\}.*'regulatd'"
    ):
        evaluate("${regulatd}", VARIABLES)


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("${outcome}", "non-Boolean"),
        ("${1 +}", "unexpected end of expression"),
        ("${__import__('os').system('true')}", "method calls are not supported"),
        ("${doc.properties.value.__class__}", "not found on int"),
        ("${'a' + 'b'}", "cannot coerce 'a' to a number"),
        ("${outcome == 'x'", "unterminated expression"),
        ("${a ; b}", "unexpected character ';'"),
    ],
)
def test_bad_expressions_fail_clearly(expression, problem):
    with pytest.raises(JuelError, match=problem):
        evaluate_condition(expression, {**VARIABLES, "a": 1, "b": 2})
