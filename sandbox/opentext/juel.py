"""A small, safe evaluator for the JUEL (Unified Expression Language) that Flowable and OpenText models use.

Gateway conditions, candidate groups, due dates and timer durations in the models are JUEL:
``${outcome == 'approved'}``, ``${approvalStatus == "rejected"}``, ``${doc.properties.value > 1000}``,
``${manager_group}``. This module tokenizes and parses such expressions itself and evaluates the syntax
tree against a dict of process variables. It never hands the input to Python's ``eval``; the only names an
expression can reach are the variables it is given.

Supported: ``${...}`` and ``#{...}`` (a lone expression keeps its type; text mixed with expressions becomes
a string), string (single or double quotes), integer, decimal, boolean and ``null`` literals, identifiers,
nested properties (``a.b``, ``a['b']``, ``list[0]``), ``empty``, ``! not``, unary ``-``, ``* / div % mod``,
``+ -``, ``< > <= >= lt gt le ge``, ``== != eq ne``, ``&& and``, ``|| or`` and ``cond ? a : b``. Coercion
follows the EL specification (section 1.8-1.10): numbers compare numerically, ``null`` relations are false,
``&&``/``||``/``!`` need booleans (or the strings ``"true"``/``"false"``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class JuelError(ValueError):
    """An expression could not be parsed or evaluated; the message names the expression."""


class UnknownPropertyError(JuelError):
    """An expression names a variable the process does not have."""


_KEYWORD_OPERATORS = {
    "and": "&&",
    "or": "||",
    "not": "!",
    "eq": "==",
    "ne": "!=",
    "lt": "<",
    "gt": ">",
    "le": "<=",
    "ge": ">=",
    "div": "/",
    "mod": "%",
    "empty": "empty",
}
_LITERAL_WORDS = {"true": True, "false": False, "null": None}
_TOKEN_PATTERN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<operator>==|!=|<=|>=|&&|\|\||[-+*/%<>!?:.\[\]()])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str  # "number", "string", "name", "literal", "op" or "end"
    value: Any
    position: int
    text: str = ""


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(source):
        match = _TOKEN_PATTERN.match(source, position)
        if match is None:
            raise JuelError(f"unexpected character {source[position]!r} at position {position}")
        kind, text = match.lastgroup, match.group()
        if kind == "number":
            value = float(text) if any(c in text for c in ".eE") else int(text)
            tokens.append(_Token("number", value, position, text))
        elif kind == "string":
            tokens.append(_Token("string", re.sub(r"\\(.)", r"\1", text[1:-1]), position, text))
        elif kind == "name" and text in _LITERAL_WORDS:
            tokens.append(_Token("literal", _LITERAL_WORDS[text], position, text))
        elif kind == "name" and text in _KEYWORD_OPERATORS:
            tokens.append(_Token("op", _KEYWORD_OPERATORS[text], position, text))
        elif kind in ("name", "operator"):
            tokens.append(_Token("name" if kind == "name" else "op", text, position, text))
        position = match.end()
    tokens.append(_Token("end", None, len(source)))
    return tokens


class _Parser:
    """Recursive-descent parser producing nested tuples: ("literal", v), ("var", name), (op, ...)."""

    _BINARY_LEVELS = (
        ("||",),
        ("&&",),
        ("==", "!="),
        ("<", ">", "<=", ">="),
        ("+", "-"),
        ("*", "/", "%"),
    )

    def __init__(self, source: str):
        self.tokens = _tokenize(source)
        self.index = 0

    def parse(self) -> tuple:
        tree = self._ternary()
        if self._peek().kind != "end":
            token = self._peek()
            raise JuelError(f"unexpected {token.value!r} at position {token.position}")
        return tree

    def _peek(self) -> _Token:
        return self.tokens[self.index]

    def _accept(self, *operators: str) -> str | None:
        token = self._peek()
        if token.kind == "op" and token.value in operators:
            self.index += 1
            return token.value
        return None

    def _expect(self, operator: str) -> None:
        if self._accept(operator) is None:
            token = self._peek()
            found = "end of expression" if token.kind == "end" else repr(token.value)
            raise JuelError(f"expected {operator!r} at position {token.position}, found {found}")

    def _ternary(self) -> tuple:
        condition = self._binary(0)
        if self._accept("?") is None:
            return condition
        when_true = self._ternary()
        self._expect(":")
        return ("?", condition, when_true, self._ternary())

    def _binary(self, level: int) -> tuple:
        if level == len(self._BINARY_LEVELS):
            return self._unary()
        left = self._binary(level + 1)
        while operator := self._accept(*self._BINARY_LEVELS[level]):
            left = (operator, left, self._binary(level + 1))
        return left

    def _unary(self) -> tuple:
        operator = self._accept("!", "-", "empty")
        if operator is not None:
            return ("neg" if operator == "-" else operator, self._unary())
        return self._value()

    def _value(self) -> tuple:
        node = self._base()
        while True:
            if self._accept("."):
                token = self._peek()
                if not token.text.isidentifier():
                    raise JuelError(f"expected a property name at position {token.position}")
                self.index += 1
                node = ("property", node, ("literal", token.text))
            elif self._accept("["):
                node = ("property", node, self._ternary())
                self._expect("]")
            elif self._peek().kind == "op" and self._peek().value == "(":
                raise JuelError(f"method calls are not supported (position {self._peek().position})")
            else:
                return node

    def _base(self) -> tuple:
        token = self._peek()
        self.index += 1
        if token.kind in ("number", "string", "literal"):
            return ("literal", token.value)
        if token.kind == "name":
            return ("var", token.value)
        if token.kind == "op" and token.value == "(":
            node = self._ternary()
            self._expect(")")
            return node
        found = "end of expression" if token.kind == "end" else repr(token.value)
        raise JuelError(f"unexpected {found} at position {token.position}")


def _to_boolean(value: Any) -> bool:
    if value is None or value == "":
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.lower() == "true"
    raise JuelError(f"cannot coerce {value!r} to a boolean")


def _to_number(value: Any) -> int | float:
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise JuelError(f"cannot coerce boolean {value!r} to a number")
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            raise JuelError(f"cannot coerce {value!r} to a number") from None
    raise JuelError(f"cannot coerce {type(value).__name__} to a number")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equals(left: Any, right: Any) -> bool:
    if left is None or right is None:
        return left is None and right is None
    if _is_number(left) or _is_number(right):
        return _to_number(left) == _to_number(right)
    if isinstance(left, bool) or isinstance(right, bool):
        return _to_boolean(left) == _to_boolean(right)
    if isinstance(left, str) or isinstance(right, str):
        return str(left) == str(right)
    return left == right


def _compare(operator: str, left: Any, right: Any) -> bool:
    if left is None or right is None:
        return False
    if _is_number(left) or _is_number(right):
        left, right = _to_number(left), _to_number(right)
    elif not (isinstance(left, str) and isinstance(right, str)):
        raise JuelError(f"cannot compare {left!r} and {right!r}")
    return {"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[operator]


def _arithmetic(operator: str, left: Any, right: Any) -> int | float:
    left, right = _to_number(left), _to_number(right)
    if operator == "+":
        return left + right
    if operator == "-":
        return left - right
    if operator == "*":
        return left * right
    if operator == "/":
        if right == 0:
            return math.nan if left == 0 else math.copysign(math.inf, left) * math.copysign(1, right)
        return left / right
    if right == 0:
        if isinstance(left, int) and isinstance(right, int):
            raise JuelError("division by zero in '%'")
        return math.nan
    remainder = math.fmod(left, right)
    return int(remainder) if isinstance(left, int) and isinstance(right, int) else remainder


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | tuple | dict) and len(value) == 0)


def _property(base: Any, key: Any) -> Any:
    if base is None:
        return None
    if isinstance(base, Mapping):
        return base.get(key)
    if isinstance(base, list | tuple):
        index = _to_number(key)
        return base[int(index)] if 0 <= index < len(base) else None
    raise JuelError(f"property {key!r} not found on {type(base).__name__} value {base!r}")


class _Evaluator:
    def __init__(self, variables: Mapping[str, Any]):
        self.variables = variables

    def run(self, node: tuple) -> Any:
        kind = node[0]
        if kind == "literal":
            return node[1]
        if kind == "var":
            if node[1] not in self.variables:
                raise UnknownPropertyError(f"Cannot resolve identifier '{node[1]}'")
            return self.variables[node[1]]
        if kind == "property":
            return _property(self.run(node[1]), self.run(node[2]))
        if kind == "?":
            return self.run(node[2]) if _to_boolean(self.run(node[1])) else self.run(node[3])
        if kind == "&&":
            return _to_boolean(self.run(node[1])) and _to_boolean(self.run(node[2]))
        if kind == "||":
            return _to_boolean(self.run(node[1])) or _to_boolean(self.run(node[2]))
        if kind == "!":
            return not _to_boolean(self.run(node[1]))
        if kind == "empty":
            return _is_empty(self.run(node[1]))
        if kind == "neg":
            return -_to_number(self.run(node[1]))
        left, right = self.run(node[1]), self.run(node[2])
        if kind == "==":
            return _equals(left, right)
        if kind == "!=":
            return not _equals(left, right)
        if kind in ("<", ">", "<=", ">="):
            return _compare(kind, left, right)
        return _arithmetic(kind, left, right)


_EXPRESSION_START = re.compile(r"[$#]\{")


def _split_composite(text: str) -> list[tuple[str, str]]:
    """Split ``text`` into ("text", ...) and ("expr", ...) parts, honouring quotes inside ``${...}``."""
    parts: list[tuple[str, str]] = []
    position = 0
    while (start := _EXPRESSION_START.search(text, position)) is not None:
        if start.start() > position:
            parts.append(("text", text[position : start.start()]))
        index, quote = start.end(), None
        while index < len(text):
            char = text[index]
            if quote:
                if char == "\\":
                    index += 1
                elif char == quote:
                    quote = None
            elif char in "'\"":
                quote = char
            elif char == "}":
                break
            index += 1
        else:
            raise JuelError(f"unterminated expression starting at position {start.start()}")
        parts.append(("expr", text[start.end() : index]))
        position = index + 1
    if position < len(text):
        parts.append(("text", text[position:]))
    return parts


def evaluate(expression: str, variables: Mapping[str, Any]) -> Any:
    """Evaluate a JUEL composite expression against process variables.

    Plain text without ``${...}`` evaluates to itself (as in JUEL), so a timer duration written as
    ``PT4H`` and one written as ``${escalation_after}`` both work.
    """
    try:
        parts = _split_composite(expression)
        evaluator = _Evaluator(variables)
        if len(parts) == 1 and parts[0][0] == "expr":
            return evaluator.run(_Parser(parts[0][1]).parse())
        rendered = []
        for kind, text in parts:
            value = text if kind == "text" else evaluator.run(_Parser(text).parse())
            rendered.append("" if value is None else _render(value))
        return "".join(rendered)
    except UnknownPropertyError as error:
        raise UnknownPropertyError(
            f"Unknown property used in expression: {expression}. Cause: {error}"
        ) from None
    except JuelError as error:
        raise JuelError(f"Error evaluating expression {expression}: {error}") from None


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def evaluate_condition(expression: str, variables: Mapping[str, Any]) -> bool:
    """Evaluate a sequence-flow condition; like Flowable, anything but a boolean result is an error."""
    result = evaluate(expression, variables)
    if not isinstance(result, bool):
        raise JuelError(
            f"condition expression returns non-Boolean: {expression} gave {type(result).__name__} {result!r}"
        )
    return result
