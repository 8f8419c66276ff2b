"""Prodigy's configuration: ``$PRODIGY_HOME/prodigy.json`` plus ``PRODIGY_CONFIG_OVERRIDES``.

Prodigy reads its home from ``PRODIGY_HOME`` (default ``~/.prodigy``), its settings from ``prodigy.json``
there, and applies the JSON object in ``PRODIGY_CONFIG_OVERRIDES`` on top (a shallow update, key by key).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sandbox.prodigy.errors import ProdigyError

CONFIG_FILE = "prodigy.json"


def prodigy_home() -> Path:
    """The directory Prodigy keeps its configuration and SQLite database in."""
    return Path(os.environ.get("PRODIGY_HOME") or Path.home() / ".prodigy")


def _json_object(text: str, source: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as err:
        raise ProdigyError(f"{source} is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise ProdigyError(f"{source} must be a JSON object, not {type(value).__name__}")
    return value


def load_config() -> dict[str, Any]:
    """The merged settings: prodigy.json in PRODIGY_HOME (when present), then PRODIGY_CONFIG_OVERRIDES."""
    config: dict[str, Any] = {}
    path = prodigy_home() / CONFIG_FILE
    if path.exists():
        config.update(_json_object(path.read_text(encoding="utf-8"), str(path)))
    overrides = os.environ.get("PRODIGY_CONFIG_OVERRIDES")
    if overrides:
        config.update(_json_object(overrides, "PRODIGY_CONFIG_OVERRIDES"))
    return config
