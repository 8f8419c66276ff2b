"""The audit log's head anchored in Airflow's metadata, and the command that checks a log against it.

The hash chain of :mod:`prodigy_opentext.core.audit` shows an edited entry, but not a log cut short,
deleted, or rewritten with a recomputed chain. So every audit entry a flow records also sets the Airflow
Variable ``prodigy_opentext_audit_head``: JSON keyed by each log's resolved path, holding the last entry's
``seq`` and ``hash`` and when it was anchored. A copy of that JSON kept elsewhere (``airflow variables get
prodigy_opentext_audit_head > heads.json``) serves as an ``--anchor-file``.

    python -m prodigy_opentext.audit verify PATH [--anchor-file FILE ...] [--no-airflow]

checks the chain and the anchored head(s): exit 0 when intact, 1 when not (or when a log with entries has
no anchored head to be checked against), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prodigy_opentext.core.audit import AuditHead, verify_audit_log

AUDIT_HEAD_VARIABLE = "prodigy_opentext_audit_head"
"""The Airflow Variable holding each audit log's anchored head."""


def _head_from_json(value: Any, anchored_in: str) -> AuditHead | None:
    if not isinstance(value, dict):
        return None
    return AuditHead(int(value["seq"]), str(value["hash"]), value.get("ts"), anchored_in)


class VariableAnchor:
    """One log's head in the Airflow Variable ``prodigy_opentext_audit_head``, through the Task SDK: set by
    the flows' tasks (through the execution API), read there, in the api-server and by ``verify`` (from the
    metadata database, as Airflow's server processes read Variables)."""

    where = f"Airflow Variable {AUDIT_HEAD_VARIABLE}"

    def __init__(self, log_path: str | os.PathLike) -> None:
        self.key = str(Path(log_path).resolve())

    def _heads(self) -> dict[str, Any]:
        from airflow.sdk import Variable

        heads = Variable.get(AUDIT_HEAD_VARIABLE, None, deserialize_json=True)
        return heads if isinstance(heads, dict) else {}

    def anchored_head(self) -> AuditHead | None:
        return _head_from_json(self._heads().get(self.key), self.where)

    def anchor(self, head: AuditHead) -> None:
        heads = self._heads()
        heads[self.key] = {
            "seq": head.seq,
            "hash": head.hash,
            "ts": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        from airflow.sdk import Variable

        Variable.set(
            AUDIT_HEAD_VARIABLE,
            heads,
            description="The last entry of each audit log, by path: python -m prodigy_opentext.audit verify",
            serialize_json=True,
        )


def head_in_file(anchor_file: Path, log_path: str | os.PathLike) -> AuditHead | None:
    """The head an anchor file (the Variable's JSON, copied) holds for ``log_path``."""
    heads = json.loads(anchor_file.read_text())
    return _head_from_json(heads.get(str(Path(log_path).resolve())), f"anchor file {anchor_file}")


def verify(log_path: Path, anchor_files: list[Path], use_airflow: bool) -> tuple[int, str]:
    """The exit code and report of ``verify``: the chain, and every anchored head found."""
    places = [*([VariableAnchor.where] if use_airflow else []), *(f"anchor file {f}" for f in anchor_files)]
    found = [VariableAnchor(log_path).anchored_head()] if use_airflow else []
    found += [head_in_file(anchor_file, log_path) for anchor_file in anchor_files]
    anchors = [head for head in found if head is not None]
    verification = verify_audit_log(log_path, anchors)
    if not verification.valid:
        return 1, str(verification)
    if anchors:
        return 0, str(verification)
    looked = f"in {', '.join(places)}" if places else "anywhere (--no-airflow and no --anchor-file)"
    if verification.entries == 0:
        return 0, f"{verification}; no anchored head found {looked}: nothing recorded yet"
    return 1, (
        f"audit log chain intact: {verification.entries} entries, but NOT anchored: no head found {looked}, "
        "so entries cut off the end, a deleted log or a rewritten chain would pass unseen"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m prodigy_opentext.audit", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("verify", help="check an audit log's chain and its anchored head(s)")
    check.add_argument("path", type=Path, help="the audit log (JSON lines)")
    check.add_argument(
        "--anchor-file",
        type=Path,
        action="append",
        default=[],
        help=f"JSON of anchored heads by log path, as in the Variable {AUDIT_HEAD_VARIABLE} (repeatable)",
    )
    check.add_argument(
        "--no-airflow", action="store_true", help=f"do not read the Variable {AUDIT_HEAD_VARIABLE}"
    )
    args = parser.parse_args(argv)
    # Read the Variable from the metadata database, as Airflow's own CLI commands do outside a task.
    os.environ.setdefault("_AIRFLOW_PROCESS_CONTEXT", "server")
    for anchor_file in args.anchor_file:
        if not anchor_file.is_file():
            parser.error(f"--anchor-file {anchor_file}: no such file")
    code, report = verify(args.path, args.anchor_file, use_airflow=not args.no_airflow)
    print(report)
    return code


if __name__ == "__main__":
    sys.exit(main())
