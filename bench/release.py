"""The release data path: export, merge every annotator's answers, validate, write the release files.

Targets (DESIGN §7), measured side by side in one run on a Prodigy SQLite database of N answers from three
annotators (N/3 items, each answered by all three):
- the whole path <= 3x the raw floor's time (plain ``SELECT content`` of the same rows copied to a file);
- its peak memory (VmHWM) <= 500 MB above the process's import baseline, and flat from 200k to 1M.

The path is the release DAG's: :func:`~prodigy_opentext.flows.release.stage_release_data` (export and
consensus, review figures, ``annotations.jsonl`` and ``disputes.jsonl``), the annotation suites as
``AnnotationValidationOperator`` runs them, then the release files as ``publish_release`` writes them
(:func:`~prodigy_opentext.core.release.write_release`; the audit entry, which needs Airflow's metadata
database, is left out). Rows are the real NER sample (``ner_fashion_brands.jsonl``) with new hashes and
three named sessions, stored as Prodigy lays them out; annotators work through the stream a few thousand
items apart, so an item's answers are far apart in the table. Each measurement runs in a fresh subprocess,
so each peak is its own. The GX suites' time over the same rules in plain pandas is printed as
information (not judged).
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

from bench.export import EXPORT, FLOOR, SAMPLE, SCHEMA, row_templates, signed32

REPO = Path(__file__).resolve().parent.parent
DATASET = "ner_fashion_release"
ANNOTATORS = ("alex", "kim", "sam")
LABELS = ["FASHION_BRAND"]
LAG = 5_000
"""How many items each annotator is behind the one before."""
TIME_RATIO_TARGET = 3.0
MEMORY_TARGET_MB = 500.0
FLAT_GROWTH_MB = 100.0
"""How much the peak may grow from the smallest size to the largest and still count as flat."""


def item_hashes(item: int) -> tuple[int, int]:
    """Distinct input and task hashes per item (odd multipliers are bijections on 32 bits), in no order."""
    return signed32(item * 2_654_435_761), signed32(item * 2_246_822_519 + 1)


def answer_order(items: int) -> Any:
    """``(item, annotator)`` in the order answers are saved: each annotator ``LAG`` items behind the last."""
    for step in range(items + LAG * (len(ANNOTATORS) - 1)):
        for annotator in range(len(ANNOTATORS)):
            item = step - annotator * LAG
            if 0 <= item < items:
                yield item, annotator


def build_database(path: Path, answers: int) -> float:
    """``answers`` NER answers (every item answered by each of ``ANNOTATORS``), linked as Prodigy links."""
    start = time.perf_counter()
    sessions = [f"{DATASET}-{name}" for name in ANNOTATORS]
    templates = [row_templates(SAMPLE, _session_id=s, _annotator_id=s) for s in sessions]
    items = answers // len(ANNOTATORS)
    db = sqlite3.connect(path)
    db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + SCHEMA)
    now = int(time.time())
    meta = {"labels": LABELS, "annotator_emails": {name: f"{name}@example.com" for name in ANNOTATORS}}
    db.executemany(
        "INSERT INTO dataset (id, name, created, meta, session) VALUES (?, ?, ?, ?, ?)",
        [(1, DATASET, now, json.dumps(meta).encode(), 0)]
        + [(2 + n, session, now, b"{}", 1) for n, session in enumerate(sessions)],
    )

    def examples() -> Any:
        for example_id, (item, annotator) in enumerate(answer_order(items), start=1):
            head, middle, tail, _, _ = templates[annotator][item % len(templates[annotator])]
            input_hash, task_hash = item_hashes(item)
            content = b"".join((head, str(input_hash).encode(), middle, str(task_hash).encode(), tail))
            yield example_id, input_hash, task_hash, content

    db.executemany("INSERT INTO example (id, input_hash, task_hash, content) VALUES (?, ?, ?, ?)", examples())
    links = (
        (example_id, dataset_id)
        for example_id, (_, annotator) in enumerate(answer_order(items), start=1)
        for dataset_id in (1, 2 + annotator)
    )
    db.executemany("INSERT INTO link (example_id, dataset_id) VALUES (?, ?)", links)
    db.commit()
    db.close()
    return time.perf_counter() - start


RELEASE = """
import json, os, time
from pathlib import Path
import great_expectations, pandas  # the operator imports both when it runs: part of the import baseline
from bench.validation import pandas_rules
from prodigy_opentext.core.release import write_release
from prodigy_opentext.core.review_report import DATASET_CARD_NAME, dataset_card_html
from prodigy_opentext.core.validation import AnnotationRules, flatten_export, load_suites
from prodigy_opentext.flows.release import stage_release_data
from prodigy_opentext.operators.annotation_validation import run_annotation_suites

def run(database, workdir, dataset, answers):
    workdir = Path(workdir)
    settings = {"sqlite": {"name": Path(database).name, "path": str(Path(database).parent)}}
    connection = {"conn_type": "prodigy", "extra": {"db": "sqlite", "db_settings": settings}}
    os.environ["AIRFLOW_CONN_PRODIGY_BENCH"] = json.dumps(connection)
    phases, clock = {}, time.perf_counter()
    def phase(name):
        nonlocal clock
        now = time.perf_counter()
        phases[name], clock = now - clock, now
    target = {"dataset": dataset, "version": f"b{answers}", "last_example_id": int(answers),
              "regulated": False, "label_scheme": ["FASHION_BRAND"]}
    staged = stage_release_data(
        target, workdir / "staging", "bench", workdir / "audit.jsonl", "prodigy_bench"
    )
    phase("stage (export, consensus, figures)")
    rules = AnnotationRules(tuple(staged["label_scheme"]), min_examples_per_label=1, max_ignore_rate=0.1)
    frames = flatten_export(staged["annotations"], rules, staged["disputes"]).frames()
    phase("validation tables")
    summary = run_annotation_suites(frames, load_suites(), rules)
    phase("GX suites")
    release = write_release(
        workdir / "releases", staged["dataset"], staged["version"],
        {"annotations.jsonl": staged["annotations"]}, attachments={"disputes.jsonl": staged["disputes"]},
        validation=summary, adjudications=staged["adjudications"], reworked=staged["reworked"],
        source_dataset=staged["dataset"], sessions=staged["sessions"],
        agreement=staged["agreement"], regulated=False, licence=staged["licence"],
        dataset_card=(DATASET_CARD_NAME, dataset_card_html), run_id="bench",
    )
    phase("release files")

    def same_rules_in_pandas():  # information only, after the peak is read
        start = time.perf_counter()
        pandas_rules(frames, rules.parameters())
        return {"pandas_s": time.perf_counter() - start}

    result = {"phases": phases, "validation": summary["success"], "rules": summary["statistics"]["evaluated"],
              "examples": release.manifest["counts"]["examples"], "disputes": staged["consensus"]["disputes"]}
    return result, same_rules_in_pandas
"""

MEASURE = """
import json, sys, time
def hwm_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
namespace = {"__name__": "__measured__"}
exec(compile(sys.argv[1], "<measured>", "exec"), namespace)
baseline = hwm_mb()
start = time.perf_counter()
outcome = namespace["run"](*json.loads(sys.argv[2]))
seconds, above = time.perf_counter() - start, hwm_mb() - baseline
result, after = outcome if isinstance(outcome, tuple) else (outcome or {}, None)
print(json.dumps({**result, **(after() if after else {}), "seconds": seconds, "baseline_mb": baseline,
                  "above_baseline_mb": above}))
"""


def measure(program: str, *arguments: Any) -> dict[str, Any]:
    """Run one program in a fresh interpreter; time only its ``run`` (imports come before the baseline)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-c", MEASURE, program, json.dumps([str(a) for a in arguments])]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(f"measurement failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def bench_size(answers: int, workdir: Path, rounds: int) -> tuple[list[str], dict[str, Any]]:
    database = workdir / f"prodigy-{answers}.db"
    build_seconds = build_database(database, answers)
    lines = [
        f"{answers:,} answers ({answers // len(ANNOTATORS):,} items x {len(ANNOTATORS)} annotators): "
        f"database built in {build_seconds:.1f}s ({database.stat().st_size / 1e6:.0f} MB)"
    ]
    floors, exports, releases = [], [], []
    for round_number in range(rounds):  # alternate, so machine noise hits all alike; best of each
        floors.append(measure(FLOOR, database, workdir / "floor.jsonl", 0, DATASET))
        exports.append(measure(EXPORT, database, workdir / "export.jsonl", 0, DATASET))
        run_dir = workdir / f"run-{round_number}"
        releases.append(measure(RELEASE, database, run_dir, DATASET, answers))
        shutil.rmtree(run_dir, ignore_errors=True)
    for leftover in ("floor.jsonl", "export.jsonl"):
        (workdir / leftover).unlink(missing_ok=True)
    database.unlink()
    floor = min(floors, key=lambda m: m["seconds"])
    export = min(exports, key=lambda m: m["seconds"])
    release = min(releases, key=lambda m: m["seconds"])
    phases = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in release["phases"].items())
    gx, pandas = release["phases"]["GX suites"], release["pandas_s"]
    lines += [
        f"  raw floor     {floor['seconds']:>7.1f} s  {answers / floor['seconds']:>9,.0f} rows/s"
        f"  peak {floor['above_baseline_mb']:>6.0f} MB above baseline",
        f"  export alone  {export['seconds']:>7.1f} s  {answers / export['seconds']:>9,.0f} rows/s"
        f"  {export['seconds'] / floor['seconds']:.2f}x the floor (information: the export step alone)",
        f"  release path  {release['seconds']:>7.1f} s  {answers / release['seconds']:>9,.0f} rows/s"
        f"  peak {release['above_baseline_mb']:>6.0f} MB above baseline "
        f"({release['baseline_mb']:.0f} MB after imports)",
        f"    {phases}",
        f"    {release['examples']:,} examples, {release['disputes']:,} open disputes; validation "
        f"{'passed' if release['validation'] else 'FAILED'} ({release['rules']} rules)",
        f"    GX suites {gx:.2f}s, the same rules in pandas {pandas:.2f}s: {gx / pandas:.1f}x (information)",
    ]
    return lines, {"ratio": release["seconds"] / floor["seconds"], "peak_mb": release["above_baseline_mb"]}


def judged(figures: dict[int, dict[str, Any]]) -> list[tuple[str, bool]]:
    """The targets over every size: time against the floor, peak memory, and the peak flat in size."""
    checks = [
        (
            f"{size:,}: release/floor {f['ratio']:.2f}x (target <= {TIME_RATIO_TARGET:.0f}x)",
            f["ratio"] <= TIME_RATIO_TARGET,
        )
        for size, f in figures.items()
    ]
    checks += [
        (
            f"{size:,}: peak {f['peak_mb']:.0f} MB above baseline (target <= {MEMORY_TARGET_MB:.0f} MB)",
            f["peak_mb"] <= MEMORY_TARGET_MB,
        )
        for size, f in figures.items()
    ]
    if len(figures) > 1:
        smallest, largest = figures[min(figures)], figures[max(figures)]
        growth = largest["peak_mb"] - smallest["peak_mb"]
        checks.append(
            (
                f"peak grows {growth:.0f} MB from {min(figures):,} to {max(figures):,} answers "
                f"(target: flat, <= {FLAT_GROWTH_MB:.0f} MB)",
                growth <= FLAT_GROWTH_MB,
            )
        )
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench release", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200000,1000000", help="comma-separated answer counts")
    parser.add_argument(
        "--quick", action="store_true", help="small sizes for a CI smoke run (exit 0 on misses)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="alternating floor/release runs; best of each")
    parser.add_argument(
        "--workdir", type=Path, help="folder for the databases and outputs (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    sizes = [3_000, 15_000] if args.quick else [int(size) for size in args.sizes.split(",")]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-release-"))
    workdir.mkdir(parents=True, exist_ok=True)
    figures = {}
    try:
        for size in sizes:
            lines, figures[size] = bench_size(size, workdir, args.rounds)
            print("\n".join(lines), flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    checks = judged(figures)
    print("\n".join(f"  {'PASS' if ok else 'FAIL'}  {text}" for text, ok in checks))
    passed = all(ok for _, ok in checks)
    print(
        f"release benchmark: {'PASS' if passed else 'FAIL'}"
        + (" (quick run: not judged)" if args.quick else "")
    )
    return 0 if passed or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
