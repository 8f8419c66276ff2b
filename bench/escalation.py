"""Label escalation at scale: what Airflow's side of flow 2 costs per disputed item, in OpenText and Prodigy.

Targets (issue 11, point 6), measured side by side in one run:
- at most 0.1 OpenText HTTP calls per item made by Airflow's side (tokens included; the reviewers' own
  calls are not Airflow's and are not counted);
- adjudicated examples written at >= 0.5x the speed of ``ProdigyHook.add_examples`` of the same rows into
  a fresh dataset (one call), timed in the same run.

N disputed items (two sessions that disagree on each, rows of ``textcat_docs_issues.jsonl`` with their own
hashes) are stored through ``ProdigyHook`` in a temporary Prodigy SQLite database. Airflow's side is the
DAG ``label_escalation``'s own code, each step as its task runs it: ``batch_to_review``, ``find_cases``,
the deploy operator, ``case_request`` and one start operator per case, then, once reviewers (as
``senior@example.com``, over plain REST) have completed every case's ``senior_review`` with one decision
per item, one ``OpenTextServiceTaskOperator`` per case running ``check_and_write`` and completing
``check_decisions``. Each operator gets a fresh hook, as each mapped task instance does. OpenText is the
sandbox (``python -m sandbox.opentext``) in a subprocess; the audit log's head is anchored in a temporary,
migrated Airflow metadata database. The calls a deferred wait makes while reviewers have not decided (two
per poll per case) depend on the poll interval and the reviewers, so they are left out: the decision is
read once, when it exists, as the operator reads it first.

Calls are counted in ``OpenTextWorkflowHook._send`` (every HTTP request of every hook: token requests,
retries and all); Prodigy's as the hook's connections and SQL statements. The adjudicated write is the
time inside the ``add_examples`` calls ``check_and_write`` makes, summed over cases;
the comparison, one ``add_examples`` of the rows those calls stored into a fresh dataset.

    python -m bench escalation [--items 10000] [--per-case 100] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "tests" / "data" / "textcat_docs_issues.jsonl"
DATASET = "escalation_bench"
ANNOTATORS = {"alice": "alice@example.com", "bob": "bob@example.com"}
REVIEWER = "senior@example.com"
ESCALATION_AFTER = "PT4H"
CALLS_PER_ITEM_TARGET = 0.1
WRITE_RATIO_TARGET = 0.5
INPUT_BASE, TASK_BASE = -2_000_000_000, 1_000_000_000
STEPS = ("find_batch", "find_cases", "deploy_process_models", "case_requests", "open_case", "adjudicate")
ADJUDICATE_PARTS = ("read_decision", "check_and_write", "complete check_decisions")


def disputed_answers(items: int) -> list[dict[str, Any]]:
    """Two sessions' answers to ``items`` questions, alice accepting and bob rejecting each one."""
    with SAMPLE.open("rb") as lines:
        rows = [json.loads(line) for line in lines]
    answered = ("_input_hash", "_task_hash", "answer", "_annotator_id", "_session_id", "_timestamp")
    bare = [{k: v for k, v in row.items() if k not in answered} for row in rows]
    answers = []
    for number in range(items):
        question = {
            **bare[number % len(bare)],
            "_input_hash": INPUT_BASE + number,
            "_task_hash": TASK_BASE + number,
        }
        for offset, (who, answer) in enumerate((("alice", "accept"), ("bob", "reject"))):
            session = f"{DATASET}-{who}"
            answers.append(
                {
                    **question,
                    "answer": answer,
                    "_annotator_id": session,
                    "_session_id": session,
                    "_timestamp": 1_700_000_000 + 2 * number + offset,
                }
            )
    return answers


def decisions_for(case: dict[str, Any]) -> list[dict[str, Any]]:
    """A reviewer's form for a case: mostly a version taken, every 7th item corrected, every 11th rejected."""
    decided = []
    for number, item in enumerate(case["items"]):
        if number % 11 == 10:
            decided.append({"item": item["item"], "decision": "rejected"})
        elif number % 7 == 6:
            decided.append(
                {"item": item["item"], "decision": "corrected", "correction": {"answer": "accept"}}
            )
        else:
            version = item["versions"][number % len(item["versions"])]["version"]
            decided.append({"item": item["item"], "decision": "chosen", "version": version})
    return decided


class Meter:
    """Wall time, OpenText HTTP calls (tokens apart) and Prodigy connections and SQL statements, by step."""

    def __init__(self, prodigy_db: Path) -> None:
        self.prodigy_db = str(prodigy_db)
        self.step: str | None = None
        self.part: str | None = None
        self.seconds: Counter[str] = Counter()
        self.runs: Counter[str] = Counter()
        self.opentext: dict[str, Counter[str]] = defaultdict(Counter)
        self.opentext_seconds: Counter[str] = Counter()
        self.prodigy: dict[str, Counter[str]] = defaultdict(Counter)
        self.write_seconds = self.stored_keys_seconds = self.audit_seconds = 0.0
        self.write_calls = 0
        self.written: list[dict[str, Any]] = []

    @contextmanager
    def measuring(self, step: str) -> Iterator[None]:
        self.step = step
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[step] += time.perf_counter() - start
            self.runs[step] += 1
            self.step = None

    @contextmanager
    def within(self, part: str) -> Iterator[None]:
        outer, self.part = self.part, part
        try:
            yield
        finally:
            self.part = outer

    def install(self) -> Callable[[], None]:
        """Count through OpenTextWorkflowHook's transport and SQLAlchemy's cursor, time the adjudicated
        writes; returns the undo."""
        import sqlalchemy as sa

        from prodigy_opentext.core.audit import AuditLog
        from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook
        from prodigy_opentext.hooks.prodigy import ProdigyHook

        meter = self
        originals = [
            (cls, name, getattr(cls, name))
            for cls, name in (
                (OpenTextWorkflowHook, "_send"),
                (OpenTextWorkflowHook, "read_decision"),
                (ProdigyHook, "_connection"),
                (ProdigyHook, "add_examples"),
                (ProdigyHook, "add_dataset"),
                (ProdigyHook, "_stored_keys"),
                (AuditLog, "append"),
            )
        ]
        send, read_decision, connection, add_examples, add_dataset, stored_keys, append = (
            original for _, _, original in originals
        )

        def counted_send(hook: Any, method: str, url: str, **kwargs: Any) -> Any:
            if meter.step is None:
                return send(hook, method, url, **kwargs)
            kind = "token" if url == hook.settings.token_url else "api"
            meter.opentext[meter.step][kind] += 1
            if meter.step == "adjudicate":
                meter.opentext[meter.part or "complete check_decisions"][kind] += 1
            start = time.perf_counter()
            try:
                return send(hook, method, url, **kwargs)
            finally:
                meter.opentext_seconds[meter.step] += time.perf_counter() - start

        def part_read_decision(hook: Any, *args: Any, **kwargs: Any) -> Any:
            with meter.within("read_decision"):
                return read_decision(hook, *args, **kwargs)

        def counted_connection(hook: Any, *args: Any, **kwargs: Any) -> Any:
            if meter.step is not None:
                meter.prodigy[meter.step]["connections"] += 1
            return connection(hook, *args, **kwargs)

        def timed_add_examples(hook: Any, dataset: str, examples: Any, session: str | None = None) -> Any:
            if meter.part != "check_and_write":
                return add_examples(hook, dataset, examples, session=session)
            rows = list(examples)
            start = time.perf_counter()
            try:
                return add_examples(hook, dataset, rows, session=session)
            finally:
                meter.write_seconds += time.perf_counter() - start
                meter.write_calls += 1
                meter.written += rows

        def timed_add_dataset(hook: Any, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return add_dataset(hook, *args, **kwargs)
            finally:
                if meter.part == "check_and_write":
                    meter.write_seconds += time.perf_counter() - start

        def timed_stored_keys(hook: Any, *args: Any) -> Any:
            start = time.perf_counter()
            try:
                return stored_keys(hook, *args)
            finally:
                if meter.part == "check_and_write":
                    meter.stored_keys_seconds += time.perf_counter() - start

        def timed_append(log: Any, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return append(log, *args, **kwargs)
            finally:
                if meter.part == "check_and_write":
                    meter.audit_seconds += time.perf_counter() - start

        def statement(conn: Any, *args: Any) -> None:
            if meter.step is not None and conn.engine.url.database == meter.prodigy_db:
                meter.prodigy[meter.step]["statements"] += 1

        replacements = (
            counted_send,
            part_read_decision,
            counted_connection,
            timed_add_examples,
            timed_add_dataset,
            timed_stored_keys,
            timed_append,
        )
        for (cls, name, _), replacement in zip(originals, replacements, strict=True):
            setattr(cls, name, replacement)
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", statement)

        def undo() -> None:
            for cls, name, original in originals:
                setattr(cls, name, original)
            sa.event.remove(sa.engine.Engine, "before_cursor_execute", statement)

        return undo


def as_task_runner(operator: Any, context: dict[str, Any]) -> Any:
    """``operator.execute(context)`` as Airflow's task runner calls it (with its sentinel and the Task
    SDK's channel to the execution API, through which the audit log's head is anchored), outside a DAG."""
    from airflow.sdk.bases.operator import ExecutorSafeguard

    from tests.fixtures.airflow_db import as_a_task

    sentinel = {f"{type(operator).__name__}__sentinel": ExecutorSafeguard.sentinel_value}
    with as_a_task():
        return operator.execute(context, **sentinel)


def airflow_environment(workdir: Path) -> dict[str, str]:
    """A metadata database, Prodigy database and quiet logs of the benchmark's own, in ``workdir``."""
    settings = {"sqlite": {"name": "prodigy.db", "path": str(workdir)}}
    return {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{workdir / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW_CONN_PRODIGY_DEFAULT": json.dumps(
            {"conn_type": "prodigy", "extra": {"db": "sqlite", "db_settings": settings}}
        ),
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(REPO), str(REPO / "dags"), os.environ.get("PYTHONPATH")])
        ),
    }


def migrate_metadata() -> None:
    command = [sys.executable, "-m", "airflow", "db", "migrate"]
    result = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")


def run(items: int, per_case: int, workdir: Path) -> tuple[list[str], bool]:
    from prodigy_opentext.core.audit import AuditLog
    from prodigy_opentext.core.escalation import CHECK_STEP, ESCALATION_PROCESS, adjudication_dataset
    from prodigy_opentext.flows.batch_approval import batch_to_review
    from prodigy_opentext.flows.escalation import case_request, check_and_write, find_cases
    from prodigy_opentext.hooks.prodigy import ProdigyHook
    from prodigy_opentext.operators.opentext import (
        OpenTextDeployModelsOperator,
        OpenTextServiceTaskOperator,
        OpenTextStartProcessOperator,
    )
    from tests.fixtures.opentext_sandbox import running_sandbox

    start = time.perf_counter()
    prodigy = ProdigyHook()
    stored = prodigy.add_examples(DATASET, disputed_answers(items))
    prodigy.set_meta(DATASET, {"labels": ["DOCUMENTATION"], "annotator_emails": ANNOTATORS})
    print(
        f"{items:,} disputed items (2 sessions disagreeing on each: {stored['added']:,} answers) stored "
        f"through ProdigyHook in {time.perf_counter() - start:.1f}s; cases of up to {per_case}",
        flush=True,
    )
    meter = Meter(workdir / "prodigy.db")
    audit_path = workdir / "audit" / "governance.jsonl"
    opentext_dir = workdir / "opentext"
    opentext_dir.mkdir()
    with running_sandbox(opentext_dir) as sandbox:
        os.environ["AIRFLOW_CONN_OPENTEXT_DEFAULT"] = json.dumps(
            {
                "conn_type": "opentext_workflow",
                "host": sandbox.url,
                "login": sandbox.client_id,
                "password": sandbox.client_secret,
                "extra": {"tenant_id": sandbox.tenant, "start_settle_seconds": 0},
            }
        )
        undo = meter.install()
        try:
            with meter.measuring("find_batch"):
                batch = batch_to_review(DATASET)
            assert batch is not None
            with meter.measuring("find_cases"):
                cases = find_cases(
                    batch,
                    workdir / "escalation",
                    min_score=None,
                    include_ignored=True,
                    include_flagged=True,
                    per_case=per_case,
                )
            with meter.measuring("deploy_process_models"):
                as_task_runner(OpenTextDeployModelsOperator(task_id="deploy_process_models"), {})
            with meter.measuring("case_requests"):
                requests = [case_request(case, ESCALATION_AFTER) for case in cases]
            process_ids = []
            for request in requests:
                opener = OpenTextStartProcessOperator(
                    task_id="open_case", process_definition_key=ESCALATION_PROCESS, **request
                )
                with meter.measuring("open_case"):
                    process_ids.append(as_task_runner(opener, {}))

            review_start = time.perf_counter()
            for case, pid in zip(cases, process_ids, strict=True):
                (task,) = sandbox.tasks(processInstanceId=pid, taskDefinitionKey="senior_review")
                adjudications = json.dumps(decisions_for(case))
                sandbox.complete(task["id"], "decided", REVIEWER, variables={"adjudications": adjudications})
            review_seconds = time.perf_counter() - review_start

            def work(decision: Any, hook: Any, **kwargs: Any) -> Any:
                with meter.within("check_and_write"):
                    return check_and_write(decision, hook, **kwargs)

            outcomes = []
            for case, pid in zip(cases, process_ids, strict=True):
                adjudicate = OpenTextServiceTaskOperator(
                    task_id="adjudicate",
                    process_instance_id=pid,
                    task_definition_key=CHECK_STEP,
                    work=work,
                    op_kwargs={"case": case, "audit_path": str(audit_path)},
                )
                with meter.measuring("adjudicate"):
                    outcomes.append(as_task_runner(adjudicate, {}))
        finally:
            undo()
        ended = [sandbox.historic_instance(pid).get("endActivityId") for pid in process_ids]

    target = adjudication_dataset(DATASET, prodigy.get_meta(DATASET))
    adjudicated = prodigy.count(target)
    audited = sum(1 for entry in AuditLog(audit_path).entries() if entry["action"] == "case_adjudicated")
    baseline_rows = [dict(row) for row in meter.written]
    start = time.perf_counter()
    ProdigyHook().add_examples(f"{DATASET}_baseline", baseline_rows, session=f"{DATASET}_baseline-session")
    baseline_seconds = time.perf_counter() - start

    counts = Counts(adjudicated, audited, len(cases), len(outcomes), ended)
    return report(meter, items, per_case, counts, review_seconds, baseline_seconds, target)


class Counts(NamedTuple):
    """What the run left behind, to check that every item went the whole way once."""

    adjudicated: int
    audited: int
    cases: int
    outcomes: int
    ended: list[str | None]


def report(
    meter: Meter,
    items: int,
    per_case: int,
    counts: Counts,
    review_seconds: float,
    baseline_seconds: float,
    target: str,
) -> tuple[list[str], bool]:
    def calls(scope: str) -> Counter[str]:
        return meter.opentext[scope]

    def row(
        name: str, runs: str, seconds: float | None, opentext: Counter[str], prodigy: str, api: str
    ) -> str:
        timing = f"{seconds:>9.2f}{1000 * seconds / items:>9.3f}" if seconds is not None else " " * 18
        made = f"{opentext['api']:,}+{opentext['token']:,}"
        return f"  {name:<28}{runs:>5}{timing}{made:>14}{api:>9}{prodigy:>14}"

    total_opentext = sum((calls(step) for step in STEPS), Counter())
    total_prodigy = sum((meter.prodigy[step] for step in STEPS), Counter())
    steps_seconds = sum(meter.seconds[step] for step in STEPS)
    lines = [
        f"  {'Airflow side, as its tasks':<28}{'runs':>5}{'seconds':>9}{'ms/item':>9}"
        f"{'OpenText':>14}{'s in OT':>9}{'Prodigy':>14}",
        f"  {'run it (each task a hook)':<28}{'':>5}{'':>9}{'':>9}{'API+token':>14}{'':>9}{'conn/SQL':>14}",
    ]
    for step in STEPS:
        prodigy = f"{meter.prodigy[step]['connections']:,}/{meter.prodigy[step]['statements']:,}"
        lines.append(
            row(
                step,
                str(meter.runs[step]),
                meter.seconds[step],
                calls(step),
                prodigy,
                f"{meter.opentext_seconds[step]:.2f}",
            )
        )
        if step == "adjudicate":
            lines += [row(f"  {part}", "", None, calls(part), "", "") for part in ADJUDICATE_PARTS]
    total_prodigy_text = f"{total_prodigy['connections']:,}/{total_prodigy['statements']:,}"
    in_opentext = f"{sum(meter.opentext_seconds.values()):.2f}"
    lines.append(row("total", "", steps_seconds, total_opentext, total_prodigy_text, in_opentext))

    made = sum(total_opentext.values())
    per_item = made / items
    narrow = sum(
        sum(calls(scope).values()) for scope in ("open_case", "check_and_write", "complete check_decisions")
    )
    lines += [
        f"  OpenText calls per item {per_item:.3f} ({made / counts.cases:.1f} per case of up to {per_case}, "
        f"{total_opentext['token']} of them token requests: {total_opentext['api'] / items:.3f} without); "
        f"starting cases + check_and_write + completing check_decisions alone: {narrow / items:.3f}",
        f"  Airflow side {1000 * steps_seconds / items:.2f} ms per item ({steps_seconds:.1f}s); Prodigy "
        f"{total_prodigy['connections'] / items:.3f} connections and "
        f"{total_prodigy['statements'] / items:.2f} SQL statements per item",
        f"  reviewers (simulated, as {REVIEWER} over REST; not counted): {review_seconds:.1f}s for "
        f"{counts.cases} cases",
    ]
    written = len(meter.written)
    write_rate, baseline_rate = written / meter.write_seconds, written / baseline_seconds
    ratio = write_rate / baseline_rate
    adjudicate = meter.seconds["adjudicate"]
    step_rate = items / adjudicate
    rest = adjudicate - meter.opentext_seconds["adjudicate"] - meter.write_seconds - meter.audit_seconds
    lines += [
        f"  adjudicated writes (check_and_write's add_examples, {meter.write_calls} calls): "
        f"{written:,} rows in {meter.write_seconds:.2f}s ({write_rate:,.0f} rows/s), of which "
        f"{meter.stored_keys_seconds:.2f}s reading the rows already stored to skip duplicates",
        f"  add_examples of the same rows into a fresh dataset, one call: {baseline_seconds:.2f}s "
        f"({baseline_rate:,.0f} rows/s)",
        f"  whole adjudicate step (OpenText reads, completion and the audit log too): "
        f"{step_rate:,.0f} rows/s, {step_rate / baseline_rate:.2f}x add_examples; its {adjudicate:.1f}s: "
        f"{meter.opentext_seconds['adjudicate']:.1f}s OpenText calls, {meter.write_seconds:.1f}s Prodigy "
        f"writes, {meter.audit_seconds:.1f}s audit log and its anchor, {rest:.1f}s the rest",
    ]
    whole = (
        counts.adjudicated == items
        and counts.outcomes == counts.cases
        and counts.audited == counts.cases
        and all(end == "end_resolved" for end in counts.ended)
    )
    checks = [
        (
            f"OpenText calls per item {per_item:.3f} (target <= {CALLS_PER_ITEM_TARGET})",
            per_item <= CALLS_PER_ITEM_TARGET,
        ),
        (
            f"adjudicated write / add_examples {ratio:.2f}x (target >= {WRITE_RATIO_TARGET}x)",
            ratio >= WRITE_RATIO_TARGET,
        ),
        (
            f"every item adjudicated once ({counts.adjudicated:,} of {items:,} in {target}), every case "
            f"audited ({counts.audited} of {counts.cases}) and resolved in OpenText: "
            f"{'yes' if whole else 'NO'}",
            whole,
        ),
    ]
    lines += [f"  {'PASS' if ok else 'FAIL'}  {text}" for text, ok in checks]
    return lines, all(ok for _, ok in checks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench escalation", description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000, help="disputed items")
    parser.add_argument("--per-case", type=int, default=100, help="items per case (one process each)")
    parser.add_argument(
        "--workdir", type=Path, help="folder for the databases and logs (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-escalation-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        env = airflow_environment(workdir)
        if "airflow" in sys.modules:  # configured already (another benchmark ran first): start afresh
            command = [
                sys.executable,
                "-m",
                "bench",
                "escalation",
                *(argv or []),
                "--workdir",
                str(workdir / "run"),
            ]
            child_env = {**os.environ, "PYTHONPATH": env["PYTHONPATH"]}
            return subprocess.run(command, env=child_env, cwd=REPO).returncode
        os.environ.update(env)
        sys.path[:0] = [path for path in (str(REPO), str(REPO / "dags")) if path not in sys.path]
        migrate_metadata()
        lines, passed = run(args.items, args.per_case, workdir)
        print("\n".join(lines), flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"escalation benchmark: {'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
