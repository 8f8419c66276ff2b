"""DAG parse time: each DAG file against an empty DAG file, side by side in one run.

Target (DESIGN §7): every DAG file parses in < 200 ms over an empty DAG's time. Each measurement imports
the file in a fresh interpreter that has already imported ``airflow.sdk`` (which every DAG file pays),
and the median of several rounds is taken, alternating files so machine noise hits both sides alike.
Bytecode is cached (in a temporary ``PYTHONPYCACHEPREFIX``, warmed by a first round that is not counted),
as in a DAG processor after its first parse: where ``PYTHONDONTWRITEBYTECODE`` is set, every probe would
otherwise compile each module it imports from source.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_MS = 200.0

EMPTY_DAG = """
from airflow.sdk import dag


@dag(schedule=None)
def empty():
    pass


empty()
"""

TASKFLOW_DAG = """
from airflow.sdk import dag, task


@dag(schedule=None)
def one_task():
    @task
    def noop():
        pass

    noop()


one_task()
"""
"""What Airflow alone costs a DAG using ``@task``: measured beside the files to show the project's share."""

PROBE = """
import importlib.util, sys, time
import airflow.sdk
sys.path.append(sys.argv[2])  # the DAGs folder, as the DAG processor puts it on sys.path
start = time.perf_counter()
spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
print((time.perf_counter() - start) * 1000)
"""


def parse_ms(path: Path, env: dict[str, str]) -> float:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), str(REPO / "dags")],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return float(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.parse", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    dag_files = sorted(p for p in (REPO / "dags").glob("*.py") if not p.name.startswith("_"))
    with tempfile.TemporaryDirectory() as tmp:
        empty, taskflow = Path(tmp) / "empty_dag.py", Path(tmp) / "taskflow_dag.py"
        empty.write_text(EMPTY_DAG)
        taskflow.write_text(TASKFLOW_DAG)
        env = {**os.environ, "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        samples: dict[Path, list[float]] = {p: [] for p in [empty, taskflow, *dag_files]}
        for path in samples:  # warm-up round: writes the bytecode cache
            parse_ms(path, env)
        for _ in range(args.rounds):
            for path in samples:
                samples[path].append(parse_ms(path, env))
        baseline = statistics.median(samples[empty])
        airflow_taskflow = statistics.median(samples[taskflow]) - baseline
    print(
        f"parse: empty DAG file {baseline:.0f} ms (median of {args.rounds}); "
        f"target: each file < +{TARGET_MS:.0f} ms"
    )
    failed = False
    for path in dag_files:
        extra = statistics.median(samples[path]) - baseline
        verdict = "PASS" if extra < TARGET_MS else "FAIL"
        failed |= verdict == "FAIL"
        own = extra - airflow_taskflow
        print(
            f"parse: {path.name:40s} +{extra:6.0f} ms over empty  {verdict}"
            f"  (Airflow's @task machinery {airflow_taskflow:.0f} ms, the project's modules {own:.0f} ms)"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
