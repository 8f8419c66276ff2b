"""``python -m sandbox.prodigy <command>``: Prodigy's database commands, its server and simulated annotators.

    db-in DATASET FILE [--answer accept] [--rehash]   import JSONL (all rows or none)
    db-out DATASET [--out FILE]                         export JSONL (stdout by default)
    stats [DATASET]                                     JSON: datasets and sessions, or one dataset's counts
    drop DATASET                                        delete a dataset
    serve DATASET --source TASKS.jsonl [--host H] [--port P] [--feed-overlap] [--annotations-per-task N]
          [--route-by-meta KEY]
    annotate --url URL --dataset D --sessions alice,bob [--seed 1] [--disagree 0.15] [--reject 0.05]
             [--ignore 0.05] [--flag 0.03] [--speed 0] [--limit N] [--reference TASKS.jsonl]

The database is the one ``PRODIGY_HOME/prodigy.json`` names (SQLite ``prodigy.db`` in PRODIGY_HOME by
default). Errors go to stderr with exit status 1.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sandbox.prodigy.config import prodigy_home
from sandbox.prodigy.db import Database, check_dataset_name, connect
from sandbox.prodigy.errors import ProdigyError
from sandbox.prodigy.tasks import ANSWERS, INPUT_HASH, read_jsonl, set_hashes


def db_in(db: Database, dataset: str, path: Path, answer: str, rehash: bool) -> str:
    """Validate the whole file first, then add every row in one transaction, linked to a new session."""
    check_dataset_name(dataset)
    for _ in read_jsonl(path):
        pass

    def prepared() -> Any:
        for _, task in read_jsonl(path):
            task.setdefault("answer", answer)
            yield set_hashes(task, overwrite=rehash)

    session_id = time.strftime("%Y-%m-%d_%H-%M-%S")
    with db.db.atomic():
        db.add_dataset(dataset)
        db.add_dataset(session_id, session=True)
        added = db.add_examples(prepared(), datasets=[dataset, session_id])
    return f"Imported {added} annotations to '{dataset}' (session {session_id}) in {db.db_id} {db.db_name}"


def db_out(db: Database, dataset: str, out: Path | None) -> str:
    if dataset not in db:
        raise ProdigyError(f"dataset {dataset!r} not found in the {db.db_id} database {db.db_name}")
    stream = out.open("wb") if out else sys.stdout.buffer
    count = 0
    try:
        for content in db.iter_raw_examples(dataset):
            stream.write(content + b"\n")
            count += 1
    finally:
        if out:
            stream.close()
        else:
            stream.flush()
    return f"Exported {count} annotations from '{dataset}'" + (f" to {out}" if out else "")


def stats(db: Database, dataset: str | None) -> dict[str, Any]:
    if dataset is None:
        datasets, sessions = db.datasets, db.sessions
        return {
            "prodigy_home": str(prodigy_home()),
            "database": {"id": db.db_id, "name": db.db_name},
            "total_datasets": len(datasets),
            "total_sessions": len(sessions),
            "datasets": datasets,
            "sessions": sessions,
        }
    counts: Counter[str] = Counter()
    for example in db.get_dataset_examples(dataset):
        counts[example.get("answer")] += 1
        counts["flagged"] += bool(example.get("flagged"))
    return {
        "dataset": dataset,
        "meta": db.get_meta(dataset),
        "annotations": db.count_dataset(dataset),
        "answers": {answer: counts[answer] for answer in ANSWERS},
        "flagged": counts["flagged"],
        "sessions": db.session_counts(dataset),
    }


def _probability(name: str) -> dict[str, Any]:
    return {"type": float, "metavar": "P", "help": f"share of answers that {name} (0-1)"}


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m sandbox.prodigy", description=__doc__.split("\n")[0])
    commands = main.add_subparsers(dest="command", required=True)

    command = commands.add_parser("db-in", help="import annotations from a JSONL file")
    command.add_argument("dataset")
    command.add_argument("file", type=Path)
    command.add_argument("--answer", default="accept", choices=ANSWERS, help="answer for rows without one")
    command.add_argument("--rehash", action="store_true", help="recompute hashes even where rows have them")

    command = commands.add_parser("db-out", help="export a dataset as JSONL")
    command.add_argument("dataset")
    command.add_argument("--out", type=Path, help="file to write (default: stdout)")

    command = commands.add_parser("stats", help="print database or dataset statistics as JSON")
    command.add_argument("dataset", nargs="?")

    command = commands.add_parser("drop", help="delete a dataset")
    command.add_argument("dataset")

    command = commands.add_parser("serve", help="run Prodigy's annotation server for a dataset")
    command.add_argument("dataset")
    command.add_argument("--source", type=Path, required=True, help="JSONL file of tasks to annotate")
    command.add_argument("--host", help="default: prodigy.json 'host', else 127.0.0.1")
    command.add_argument("--port", type=int, help="default: prodigy.json 'port', else 8092; 0 = a free port")
    command.add_argument("--feed-overlap", action=argparse.BooleanOptionalAction, default=None)
    command.add_argument("--annotations-per-task", type=int, metavar="N")
    command.add_argument("--view-id", help="annotation interface (default: inferred from the first task)")
    command.add_argument(
        "--route-by-meta",
        metavar="KEY",
        help="send a task whose meta names a session under KEY to that session only (e.g. annotator)",
    )

    command = commands.add_parser("annotate", help="answer a running server's tasks as simulated annotators")
    command.add_argument("--url", required=True)
    command.add_argument("--dataset", required=True)
    command.add_argument("--sessions", required=True, help="comma-separated session names, e.g. alice,bob")
    command.add_argument("--seed", type=int, default=1)
    command.add_argument("--disagree", default=0.15, **_probability("disagree with the others"))
    command.add_argument("--reject", default=0.05, **_probability("reject"))
    command.add_argument("--ignore", default=0.05, **_probability("ignore"))
    command.add_argument("--flag", default=0.03, **_probability("are flagged"))
    command.add_argument("--speed", type=float, default=0.0, help="answers/second per session (0 = no wait)")
    command.add_argument("--limit", type=int, help="stop each session after this many answers")
    command.add_argument(
        "--reference",
        type=Path,
        help="JSONL of reference tasks: a task of the same input is answered from its labels (rework redone)",
    )
    command.add_argument("--user", default=os.environ.get("PRODIGY_BASIC_AUTH_USER"), help="basic auth")
    command.add_argument("--password", default=os.environ.get("PRODIGY_BASIC_AUTH_PASS"), help="basic auth")
    return main


def run(args: argparse.Namespace) -> None:
    if args.command == "serve":
        from sandbox.prodigy.server import serve

        serve(
            args.dataset,
            args.source,
            host=args.host,
            port=args.port,
            feed_overlap=args.feed_overlap,
            annotations_per_task=args.annotations_per_task,
            view_id=args.view_id,
            route_by_meta=args.route_by_meta,
        )
        return
    if args.command == "annotate":
        from sandbox.prodigy.annotators import Behaviour, annotate

        names = [name.strip() for name in args.sessions.split(",") if name.strip()]
        for name in names:
            check_dataset_name(f"{args.dataset}-{name}")
        if args.limit is not None and args.limit < 1:
            raise ProdigyError(f"--limit must be at least 1, not {args.limit}")
        behaviour = Behaviour(args.disagree, args.reject, args.ignore, args.flag)
        auth = (args.user, args.password) if args.user else None
        log = functools.partial(print, flush=True)
        reference = (
            {task[INPUT_HASH]: task for task in (set_hashes(t) for _, t in read_jsonl(args.reference))}
            if args.reference
            else None
        )
        annotate(
            args.url, args.dataset, names, args.seed, behaviour, args.speed, args.limit, auth, log, reference
        )
        return
    with connect() as db:
        if args.command == "db-in":
            print(db_in(db, args.dataset, args.file, args.answer, args.rehash), file=sys.stderr)
        elif args.command == "db-out":
            print(db_out(db, args.dataset, args.out), file=sys.stderr)
        elif args.command == "stats":
            print(json.dumps(stats(db, args.dataset), indent=2))
        elif args.command == "drop":
            removed = db.drop_dataset(args.dataset)
            print(f"Removed dataset '{args.dataset}' ({removed} annotations)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    try:
        run(parser().parse_args(argv))
    except ProdigyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
