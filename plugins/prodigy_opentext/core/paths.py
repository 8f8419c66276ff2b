"""Paths built from names a user or a dataset chose: one check, so no name can leave its folder.

A Prodigy dataset name may be anything without commas or spaces, ``../releases/victim`` or ``/etc``
included; every path the project builds from a dataset name, a version or a run id takes it through
:func:`plain_name`, which lets only plain names pass.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from prodigy_opentext.exceptions import UnsafeName

INCLUDE_DIR = Path(os.environ.get("PROJECT_INCLUDE_DIR") or Path(__file__).resolve().parents[3] / "include")
"""The project's models, suites and policies: ``$PROJECT_INCLUDE_DIR`` in a deployment, else the
repository's ``include/``."""

PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
"""Letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit, up to 200 characters."""


def plain_name(value: object, what: str) -> str:
    """``value`` when it is a plain name (:data:`PLAIN_NAME`), else :class:`UnsafeName` saying why."""
    if not isinstance(value, str) or not PLAIN_NAME.match(value):
        raise UnsafeName(
            f"{what} name {value!r} cannot name a folder: use letters, digits, '.', '_' and '-' only, "
            "starting with a letter or digit (no '/', no leading dot, at most 200 characters); a dataset "
            "named so must be renamed in Prodigy (db-out, then db-in under a plain name) to be governed"
        )
    return value


def run_folder_name(run_id: str) -> str:
    """A plain folder name for an Airflow run id (``manual__2026-12-01T10:00:00+00:00``)."""
    return plain_name(re.sub(r"[^A-Za-z0-9._-]", "_", run_id).lstrip("._-")[:200] or "run", "run")
