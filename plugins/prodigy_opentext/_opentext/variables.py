"""OpenText's typed process variables ``{name, value, type}`` and its timestamps, both ways."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

INT32 = range(-(2**31), 2**31)


def rest_variable(name: str, value: Any) -> dict[str, Any]:
    """A Python value as OpenText's typed variable ``{name, value, type}``."""
    if isinstance(value, bool):
        kind = "boolean"
    elif isinstance(value, int):
        kind = "integer" if value in INT32 else "long"
    elif isinstance(value, float):
        kind = "double"
    elif isinstance(value, str):
        kind = "string"
    elif isinstance(value, datetime | date):
        moment = value if isinstance(value, datetime) else datetime(value.year, value.month, value.day)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return {"name": name, "value": format_timestamp(moment), "type": "date"}
    elif isinstance(value, dict | list):
        kind = "json"
    elif value is None:
        kind = "string"
    else:
        raise TypeError(f"variable {name!r}: cannot send a {type(value).__name__} to OpenText")
    return {"name": name, "value": value, "type": kind}


def to_rest_variables(values: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    return [rest_variable(name, value) for name, value in (values or {}).items()]


def from_rest_variable(item: Mapping[str, Any]) -> Any:
    """OpenText's typed variable as a Python value."""
    value, kind = item.get("value"), item.get("type")
    if value is None:
        return None
    if kind in ("integer", "long", "short"):
        return int(value)
    if kind == "double":
        return float(value)
    if kind == "boolean":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    if kind == "date":
        return parse_timestamp(value)
    if kind == "json" and isinstance(value, str):
        return json.loads(value)
    return value


def from_rest_variables(items: list[Mapping[str, Any]] | None) -> dict[str, Any]:
    return {item["name"]: from_rest_variable(item) for item in items or []}


def format_timestamp(moment: datetime) -> str:
    """OpenText's timestamp form, ``2018-04-17T10:17:43.902+0000``."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


def parse_timestamp(text: str) -> datetime:
    """OpenText's timestamps; one without an offset is UTC, as the service keeps its clock."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
