"""Export speed and memory: ``ProdigyHook.export_jsonl`` against the raw floor and Prodigy's load-everything.

Targets (DESIGN §7), measured side by side in one run on a Prodigy SQLite database of N NER examples:
- export >= 0.5x the raw floor (plain ``SELECT content`` copied to a file, no parsing);
- export >= 10x Prodigy's load-everything approach (every row json.loads'ed into a list, then dumped);
- export peak RSS <= 300 MB at every size (flat in N).

The database is built from ``ner_fashion_brands.jsonl``, each row replicated with new hashes, in Prodigy's
table layout (``dataset``, ``example``, ``link`` and the indexes Prodigy's peewee models create). Each
measurement runs in its own subprocess so its peak RSS (``ru_maxrss``) is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from prodigy_opentext.core.export import file_digest

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "tests" / "data" / "ner_fashion_brands.jsonl"
DATASET = "ner_fashion_bench"
SESSION = "ner_fashion_bench-annotator"
FLOOR_RATIO_TARGET = 0.5
LOAD_EVERYTHING_RATIO_TARGET = 10.0
RSS_TARGET_MB = 300.0
LOAD_EVERYTHING_MAX_ROWS = 200_000
INPUT_SENTINEL, TASK_SENTINEL = 918_273_645_501, 918_273_645_502

SCHEMA = """
CREATE TABLE dataset (id INTEGER NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, created INTEGER NOT NULL,
                      meta BLOB NOT NULL, session INTEGER NOT NULL);
CREATE UNIQUE INDEX dataset_name ON dataset (name);
CREATE TABLE example (id INTEGER NOT NULL PRIMARY KEY, input_hash BIGINT NOT NULL, task_hash BIGINT NOT NULL,
                      content BLOB NOT NULL);
CREATE TABLE link (id INTEGER NOT NULL PRIMARY KEY,
                   example_id INTEGER NOT NULL REFERENCES example (id),
                   dataset_id INTEGER NOT NULL REFERENCES dataset (id));
CREATE INDEX link_example_id ON link (example_id);
CREATE INDEX link_dataset_id ON link (dataset_id);
"""


def signed32(value: int) -> int:
    return (value & 0xFFFFFFFF) - (1 << 31)


def row_templates(sample: Path, **fields: Any) -> list[tuple[bytes, bytes, bytes, int, int]]:
    """Each sample row (with ``fields`` set) as bytes split around its two hashes, so copies with new
    hashes are cheap to make."""
    templates = []
    for line in sample.read_bytes().splitlines():
        task = json.loads(line)
        original = (task["_input_hash"], task["_task_hash"])
        task.update(fields, _input_hash=INPUT_SENTINEL, _task_hash=TASK_SENTINEL)
        encoded = json.dumps(task, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        head, rest = encoded.split(str(INPUT_SENTINEL).encode(), 1)
        middle, tail = rest.split(str(TASK_SENTINEL).encode(), 1)
        templates.append((head, middle, tail, *original))
    return templates


def build_database(path: Path, size: int) -> float:
    """Write ``size`` NER examples linked to one dataset and one session, as Prodigy lays them out."""
    start = time.perf_counter()
    templates = row_templates(SAMPLE)
    db = sqlite3.connect(path)
    db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + SCHEMA)
    now = int(time.time())
    db.executemany(
        "INSERT INTO dataset (id, name, created, meta, session) VALUES (?, ?, ?, ?, ?)",
        [(1, DATASET, now, b"{}", 0), (2, SESSION, now, b"{}", 1)],
    )

    def examples():
        for number in range(size):
            head, middle, tail, input_hash, task_hash = templates[number % len(templates)]
            copy = number // len(templates)
            new_input, new_task = signed32(input_hash + copy * 7919), signed32(task_hash + copy * 104_729)
            content = b"".join((head, str(new_input).encode(), middle, str(new_task).encode(), tail))
            yield number + 1, new_input, new_task, content

    db.executemany("INSERT INTO example (id, input_hash, task_hash, content) VALUES (?, ?, ?, ?)", examples())
    links = ((example_id, dataset_id) for example_id in range(1, size + 1) for dataset_id in (1, 2))
    db.executemany("INSERT INTO link (example_id, dataset_id) VALUES (?, ?)", links)
    db.commit()
    db.close()
    return time.perf_counter() - start


# Each measurement is a program run in a fresh interpreter: its imports and set-up happen first, then only
# ``run(database, output, limit, dataset)`` is timed.
FLOOR = """
import sqlite3

def run(database, output, limit, dataset):
    db = sqlite3.connect(database)
    with open(output, "wb") as out:
        for (content,) in db.execute("SELECT content FROM example"):
            out.write(content)
            out.write(b"\\n")
"""

EXPORT = """
import json, os
from pathlib import Path
from prodigy_opentext.hooks.prodigy import ProdigyHook

def run(database, output, limit, dataset):
    settings = {"sqlite": {"name": Path(database).name, "path": str(Path(database).parent)}}
    connection = {"conn_type": "prodigy", "extra": {"db": "sqlite", "db_settings": settings}}
    os.environ["AIRFLOW_CONN_PRODIGY_BENCH"] = json.dumps(connection)
    manifest = ProdigyHook("prodigy_bench").export_jsonl(dataset, output)
    return {"manifest_rows": manifest["rows"], "quarantined": manifest["quarantined"]}
"""

LOAD_EVERYTHING = """
import json, sqlite3

def run(database, output, limit, dataset):
    db = sqlite3.connect(database)
    query = "SELECT content FROM example LIMIT ?"
    examples = [json.loads(content) for (content,) in db.execute(query, (limit,))]
    with open(output, "w", encoding="utf-8") as out:
        for example in examples:
            out.write(json.dumps(example) + "\\n")
"""

MEASURE = """
import json, resource, sys, time
namespace = {"__name__": "__measured__"}
exec(compile(sys.argv[1], "<measured>", "exec"), namespace)
database, output, limit, dataset = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
start = time.perf_counter()
result = namespace["run"](database, output, limit, dataset) or {}
seconds = time.perf_counter() - start
maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({**result, "seconds": seconds, "maxrss_mb": maxrss_mb}))
"""


def measure(program: str, database: Path, output: Path, limit: int) -> dict[str, float]:
    """Run one program in a subprocess; its wall time excludes interpreter start-up and imports before it."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-c", MEASURE, program, str(database), str(output), str(limit), DATASET]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(f"measurement failed:\n{result.stderr[-3000:]}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    measured["rows"] = limit
    measured["rows_per_s"] = limit / measured["seconds"]
    measured["bytes"] = output.stat().st_size
    return measured


def bench_size(size: int, workdir: Path, rounds: int) -> tuple[list[str], bool]:
    database = workdir / f"prodigy-{size}.db"
    build_seconds = build_database(database, size)
    megabytes = database.stat().st_size / 1e6
    lines = [f"{size:,} NER examples: database built in {build_seconds:.1f}s ({megabytes:.0f} MB)"]
    floor_out, export_out, load_out = (
        workdir / "floor.jsonl",
        workdir / "export.jsonl",
        workdir / "load.jsonl",
    )
    floors, exports = [], []
    for _ in range(rounds):  # alternate, so machine noise hits both alike; best of each
        floors.append(measure(FLOOR, database, floor_out, size))
        exports.append(measure(EXPORT, database, export_out, size))
    floor = max(floors, key=lambda m: m["rows_per_s"])
    export = max(exports, key=lambda m: m["rows_per_s"])
    identical = file_digest(floor_out) == file_digest(export_out)
    subset = min(size, LOAD_EVERYTHING_MAX_ROWS)
    load = measure(LOAD_EVERYTHING, database, load_out, subset)
    for path in (floor_out, export_out, load_out, database):
        path.unlink(missing_ok=True)
    load_rss = load["maxrss_mb"] * size / subset
    floor_ratio = export["rows_per_s"] / floor["rows_per_s"]
    load_ratio = export["rows_per_s"] / load["rows_per_s"]
    checks = [
        (
            f"export/floor {floor_ratio:.2f}x (target >= {FLOOR_RATIO_TARGET}x)",
            floor_ratio >= FLOOR_RATIO_TARGET,
        ),
        (
            f"export/load-everything {load_ratio:.1f}x (target >= {LOAD_EVERYTHING_RATIO_TARGET:.0f}x)",
            load_ratio >= LOAD_EVERYTHING_RATIO_TARGET,
        ),
        (
            f"export peak RSS {export['maxrss_mb']:.0f} MB (target <= {RSS_TARGET_MB:.0f} MB)",
            export["maxrss_mb"] <= RSS_TARGET_MB,
        ),
        (f"export output identical to the floor's bytes: {'yes' if identical else 'NO'}", identical),
    ]
    note = (
        f" (measured on {subset:,} rows; rate and RSS extrapolated per row to {size:,})"
        if subset < size
        else ""
    )
    lines += [
        f"  raw floor        {floor['rows_per_s']:>10,.0f} rows/s  peak RSS {floor['maxrss_mb']:>7.0f} MB",
        f"  export_jsonl     {export['rows_per_s']:>10,.0f} rows/s  peak RSS {export['maxrss_mb']:>7.0f} MB"
        f"  ({export.get('manifest_rows', 0):,} rows, {export.get('quarantined', 0)} quarantined)",
        f"  load-everything  {load['rows_per_s']:>10,.0f} rows/s  peak RSS {load_rss:>7.0f} MB{note}",
    ]
    lines += [f"  {'PASS' if ok else 'FAIL'}  {text}" for text, ok in checks]
    return lines, all(ok for _, ok in checks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench export", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200000,1000000", help="comma-separated example counts")
    parser.add_argument(
        "--quick", action="store_true", help="small sizes for a CI smoke run (exit 0 on misses)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating floor/export runs; best of each")
    parser.add_argument(
        "--workdir", type=Path, help="folder for the databases and outputs (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    sizes = [2_000, 10_000] if args.quick else [int(size) for size in args.sizes.split(",")]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-export-"))
    workdir.mkdir(parents=True, exist_ok=True)
    passed = True
    try:
        for size in sizes:
            lines, ok = bench_size(size, workdir, args.rounds)
            print("\n".join(lines), flush=True)
            passed = passed and ok
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"export benchmark: {'PASS' if passed else 'FAIL'}"
        + (" (quick run: not judged)" if args.quick else "")
    )
    return 0 if passed or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
