"""Process variables in the REST shape ``{"name", "type", "value", "scope"}``, checked as Flowable does.

A missing ``type`` is inferred from the JSON value; a given ``type`` must match the value, otherwise the
request fails with a 400 naming the variable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.opentext.clock import parse_timestamp
from sandbox.opentext.errors import BadRequest

_INTEGER_RANGES = {"short": 2**15, "integer": 2**31, "long": 2**63}
SCOPES = ("global", "local")


@dataclass(frozen=True)
class Variable:
    name: str
    type: str
    value: Any
    scope: str = "global"

    def rest(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "value": self.value, "scope": self.scope}


def infer_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer" if -(2**31) <= value < 2**31 else "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    return "json"


def _check_value(name: str, type_: str, value: Any) -> Any:
    if value is None:
        return None
    where = f"variable '{name}'"
    if type_ == "string":
        if not isinstance(value, str):
            raise BadRequest(f"{where}: type string needs a string value, got {value!r}")
    elif type_ in _INTEGER_RANGES:
        limit = _INTEGER_RANGES[type_]
        if isinstance(value, bool) or not isinstance(value, int) or not -limit <= value < limit:
            raise BadRequest(f"{where}: type {type_} needs a whole number in range, got {value!r}")
    elif type_ == "double":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadRequest(f"{where}: type double needs a number, got {value!r}")
        value = float(value)
    elif type_ == "boolean":
        if not isinstance(value, bool):
            raise BadRequest(f"{where}: type boolean needs true or false, got {value!r}")
    elif type_ == "date":
        try:
            parse_timestamp(str(value))
        except ValueError:
            raise BadRequest(f"{where}: type date needs an ISO 8601 date-time, got {value!r}") from None
    elif type_ != "json":
        raise BadRequest(
            f"{where}: unsupported variable type '{type_}' "
            "(use string, short, integer, long, double, boolean, date or json)"
        )
    return value


def parse_variables(items: Any, field: str = "variables") -> list[Variable]:
    """Validate a request's variable list; every error names the item and the variable."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise BadRequest(f"{field} must be a list of {{name, type, value, scope}} objects")
    parsed, seen = [], set()
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadRequest(f"{field}[{index}] must be an object with name, type, value and scope")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise BadRequest(f"{field}[{index}]: variable name is required")
        if name in seen:
            raise BadRequest(f"{field}[{index}]: variable '{name}' is given twice")
        seen.add(name)
        scope = item.get("scope") or "global"
        if scope not in SCOPES:
            raise BadRequest(f"{field}[{index}]: variable '{name}' has scope '{scope}', use global or local")
        value = item.get("value")
        type_ = item.get("type") or infer_type(value)
        parsed.append(Variable(name, type_, _check_value(name, type_, value), scope))
    return parsed
