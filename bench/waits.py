"""A thousand approval waits in one triggerer: memory, CPU, OpenText calls and resume latency.

Targets (issue 14, points 3 and 4; DESIGN §7), measured in one run: every wait resumes within poll
interval + 2 s of its decision (p99), and within 2 s where the model calls back; memory and OpenText calls
per wait are printed.

The OpenText sandbox (``python -m sandbox.opentext``) runs in a subprocess with the batch approval model
deployed and N instances started. The triggerer is another subprocess, as Airflow's is: one asyncio loop
running N ``OpenTextProcessTrigger.run()`` generators as the batch approval's sensor defers them (instance
end, 72 h deadline), started spread over one poll interval as deferrals reach a triggerer. Once every wait
has polled, a steady window of ``--cycles`` poll intervals measures the triggerer's memory (RSS and VmHWM
above its baseline: imports done, the connection read once and N triggers built, before the loop runs them),
its CPU time per poll cycle and the OpenText calls per minute. Calls are counted on the sandbox's side
(``/sandbox/traffic``, the requests with aiohttp's User-Agent: token requests, API requests and the TCP
connections they came on). Then this process, as a reviewer over REST, approves every instance, spread over
one poll interval, noting the time each approval returned; a wait's resume latency is from then until its
trigger yielded.

Then the same number of waits again, side by side in the same run, woken by the model's callbacks: the
sandbox's HttpTasks post to the provider's callback app (served over HTTP in this process, on a migrated
metadata database of the run's own), and the triggerer reads the decision signals through the Task SDK's
channel (Airflow's in-process execution API); their poll interval is 600 s, the decisions are made over
30 s, and the target is a resume within 2 s of each decision (p99).

    python -m bench waits [--waits 1000] [--poll-interval 30] [--cycles 2] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Iterator

    from airflow.triggers.base import TriggerEvent

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "include" / "bpmn" / "annotation_batch_approval.bpmn20.xml"
PROCESS, FIRST_TASK, REVIEWER = "annotation_batch_approval", "sme_review", "sme@example.com"
LATENCY_SLACK = 2.0
PUSH_LATENCY_TARGET = 2.0
"""Where the model calls back, a wait resumes within this of its decision (DESIGN §7)."""
PUSH_POLL_SECONDS = 600.0
"""The pushed waits' poll interval: a resume before it is the callback's doing."""
PUSH_START_SECONDS = 5.0
PUSH_DECISIONS_SECONDS = 30.0
"""The pushed decisions are made over this many seconds (the polled ones over one poll interval)."""
MESSAGE = "@@ "
"""Prefix of the triggerer's report lines on its stdout (anything else it prints is passed through)."""


def memory_kib() -> dict[str, int]:
    """This process's resident set now (VmRSS) and at its peak (VmHWM), in KiB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {name: int(fields[name].split()[0]) for name in ("VmRSS", "VmHWM")}


def traffic(url: str) -> dict[str, int]:
    """The calls the sandbox saw from aiohttp clients (the async hook) since its counts were cleared."""
    with urllib.request.urlopen(f"{url}/sandbox/traffic", timeout=30) as answer:
        clients = [c for c in json.load(answer)["clients"] if "aiohttp" in c["user_agent"]]
    return {name: sum(c[name] for c in clients) for name in ("token_requests", "api_requests", "connections")}


def say(kind: str, **fields: Any) -> None:
    print(MESSAGE + json.dumps({"kind": kind, **fields}), flush=True)


async def triggerer(processes: list[str], poll_interval: float, cycles: int, url: str, push: bool) -> None:
    """The triggerer's side: run one trigger per process in this loop, report the steady window, then
    each event's time as it is yielded. With ``push``, the waits start at once and the window is the few
    seconds in which each reads once: the decisions are to wake them, not their polls."""
    from prodigy_opentext.hooks.opentext_async import OpenTextWorkflowAsyncHook
    from prodigy_opentext.triggers.opentext import OpenTextProcessTrigger

    importlib.import_module("aiohttp")  # what the hooks import on first use, and the connection read once,
    await OpenTextWorkflowAsyncHook().settings()  # belong to the baseline, not to the waits
    if push:  # as does the triggerer's channel to the API, built on its first use
        from prodigy_opentext.decision_signals import signal_keys

        await signal_keys()
    deadline = (datetime.now(UTC) + timedelta(hours=72)).isoformat()
    triggers = [
        OpenTextProcessTrigger(pid, poll_interval=poll_interval, deadline=deadline) for pid in processes
    ]
    baseline = memory_kib()
    cpu_started = time.process_time()

    async def wait(trigger: OpenTextProcessTrigger, delay: float) -> None:
        await asyncio.sleep(delay)
        events = cast("AsyncGenerator[TriggerEvent, None]", trigger.run())
        event = await anext(events)
        at = time.time()
        await events.aclose()  # as the triggerer does after a trigger's one event
        say("event", process=trigger.process_instance_id, at=at, status=event.payload["status"])

    spread = (PUSH_START_SECONDS if push else poll_interval) / len(triggers)
    waits = [asyncio.create_task(wait(trigger, i * spread)) for i, trigger in enumerate(triggers)]
    # every wait started and polled (or, pushed, read) at least once
    await asyncio.sleep(2 * PUSH_START_SECONDS if push else 2 * poll_interval)
    window_calls, window_cpu, window_started = traffic(url), time.process_time(), time.monotonic()
    await asyncio.sleep(PUSH_START_SECONDS if push else cycles * poll_interval)
    calls, cpu, seconds = traffic(url), time.process_time(), time.monotonic() - window_started
    say(
        "steady",
        baseline=baseline,
        memory=memory_kib(),
        seconds=seconds,
        cpu=cpu - window_cpu,
        cpu_before=window_cpu - cpu_started,
        calls={name: calls[name] - window_calls[name] for name in calls},
        waiting=sum(not task.done() for task in waits),
    )
    await asyncio.gather(*waits)
    say("done", memory=memory_kib(), cpu=time.process_time() - cpu_started)


def run_triggerer(args: argparse.Namespace) -> int:
    processes = Path(args.processes).read_text().split()
    waiting = triggerer(processes, args.poll_interval, args.cycles, args.url, args.push)
    if not args.push:
        asyncio.run(waiting)
        return 0
    from tests.fixtures.airflow_db import as_a_task

    with as_a_task():  # the channel a triggerer gives its triggers: the decision signals are read through it
        asyncio.run(waiting)
    return 0


class Reader(threading.Thread):
    """Collects the triggerer's report lines as they come."""

    def __init__(self, child: subprocess.Popen[str]) -> None:
        super().__init__(daemon=True)
        self.child = child
        self.events: dict[str, tuple[float, str]] = {}
        self.reports: dict[str, dict[str, Any]] = {}
        self.changed = threading.Condition()

    def run(self) -> None:
        assert self.child.stdout is not None
        for line in self.child.stdout:
            if not line.startswith(MESSAGE):
                sys.stderr.write(line)
                continue
            message = json.loads(line[len(MESSAGE) :])
            with self.changed:
                if message["kind"] == "event":
                    self.events[message["process"]] = (message["at"], message["status"])
                else:
                    self.reports[message["kind"]] = message
                self.changed.notify_all()

    def wait_for(self, kind: str, timeout: float) -> dict[str, Any]:
        with self.changed:
            if not self.changed.wait_for(
                lambda: kind in self.reports or self.child.poll() is not None, timeout
            ):
                raise RuntimeError(f"the triggerer sent no {kind!r} report in {timeout:.0f}s")
        if kind not in self.reports:
            raise RuntimeError(f"the triggerer exited ({self.child.returncode}) before its {kind!r} report")
        return self.reports[kind]


def approve_all(sandbox: Any, tasks: dict[str, str], spread: float) -> dict[str, float]:
    """Approve each instance's first task at its planned moment over ``spread`` seconds, in an order
    unrelated to the order the waits started in (so decisions fall at every phase of their polls); the time
    each approval returned, by instance."""
    decided: dict[str, float] = {}
    order = list(tasks.items())
    random.Random(14).shuffle(order)
    started = time.monotonic()
    for i, (process, task) in enumerate(order):
        time.sleep(max(0.0, started + i * spread / len(tasks) - time.monotonic()))
        sandbox.complete(task, "approved", REVIEWER)
        decided[process] = time.time()
    return decided


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run(waits: int, poll_interval: float, cycles: int, workdir: Path) -> tuple[list[str], bool]:
    """The waits polling, then the same number woken by the model's callbacks, side by side."""
    from tests.fixtures.opentext_sandbox import running_sandbox

    (workdir / "opentext").mkdir()
    with running_sandbox(workdir / "opentext") as sandbox:
        sandbox.deploy(MODEL)
        polled = measure(sandbox, waits, poll_interval, cycles, workdir / "polled", push=False)
        with callbacks_into_airflow(sandbox, workdir / "pushed") as airflow_env:
            pushed = measure(
                sandbox, waits, PUSH_POLL_SECONDS, 1, workdir / "pushed", push=True, env=airflow_env
            )
    lines = ["  polling:", *polled[0], "  woken by the model's callback:", *pushed[0]]
    return lines, polled[1] and pushed[1]


@contextlib.contextmanager
def callbacks_into_airflow(sandbox: Any, workdir: Path) -> Iterator[dict[str, str]]:
    """A metadata database, the provider's callback app served over HTTP as the api-server mounts it, and
    the sandbox's configuration pointing at it: the environment the triggerer needs to read the signals."""
    from bench.escalation import migrate_metadata
    from tests.fixtures.callbacks import serving_callbacks

    workdir.mkdir()
    token = secrets.token_urlsafe(32)
    env = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{workdir / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_OPENTEXT_CALLBACK": json.dumps({"conn_type": "generic", "password": token}),
        "_AIRFLOW_PROCESS_CONTEXT": "server",
    }
    os.environ.update(env)  # the callback app runs in this process
    migrate_metadata()
    with serving_callbacks() as url:
        sandbox.set_configuration(airflow_callback_url=url, airflow_callback_token=token)
        # One call first, as an api-server that has been up a while is: its database engine is ready.
        warm = urllib.request.Request(
            url,
            data=json.dumps({"processInstanceId": "warm-up", "activityId": "none"}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        urllib.request.urlopen(warm, timeout=60).close()
        try:
            yield {name: value for name, value in env.items() if name != "AIRFLOW_CONN_OPENTEXT_CALLBACK"}
        finally:
            sandbox.set_configuration(airflow_callback_url="")


def measure(
    sandbox: Any,
    waits: int,
    poll_interval: float,
    cycles: int,
    workdir: Path,
    *,
    push: bool,
    env: dict[str, str] | None = None,
) -> tuple[list[str], bool]:
    workdir.mkdir(exist_ok=True)
    start = time.perf_counter()

    def start_one(i: int) -> str:
        variables = {"dataset": f"bench_{i}", "regulated": False}
        return sandbox.start_process(PROCESS, f"waits-{workdir.name}-{i}", variables)["id"]

    with ThreadPoolExecutor(4) as pool:
        processes = list(pool.map(start_one, range(waits)))
    started = set(processes)
    tasks = {
        t["processInstanceId"]: t["id"]
        for t in sandbox.tasks(taskDefinitionKey=FIRST_TASK)
        if t["processInstanceId"] in started
    }
    print(f"{waits:,} batch approvals started in {time.perf_counter() - start:.1f}s", flush=True)
    process_file = workdir / "processes.txt"
    process_file.write_text("\n".join(processes))
    connection = {
        "conn_type": "opentext_workflow",
        "host": sandbox.url,
        "login": sandbox.client_id,
        "password": sandbox.client_secret,
        "extra": {"tenant_id": sandbox.tenant},
    }
    child_env = {
        **os.environ,
        **(env or {}),
        "AIRFLOW_CONN_OPENTEXT_DEFAULT": json.dumps(connection),
        "AIRFLOW_HOME": str(workdir / "airflow"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "bench.waits", "--triggerer", "--processes", str(process_file)]
    command += ["--url", sandbox.url, "--poll-interval", str(poll_interval), "--cycles", str(cycles)]
    command += ["--push"] if push else []
    sandbox.clear_traffic()
    child = subprocess.Popen(command, env=child_env, cwd=REPO, stdout=subprocess.PIPE, text=True)
    reader = Reader(child)
    reader.start()
    decisions_over = PUSH_DECISIONS_SECONDS if push else poll_interval
    try:
        steady = reader.wait_for("steady", (cycles + 3) * min(poll_interval, 60) + 120)
        decided = approve_all(sandbox, {p: tasks[p] for p in processes}, decisions_over)
        done = reader.wait_for("done", 2 * decisions_over + 120)
    finally:
        child.wait(timeout=60)
    whole_run = sandbox.traffic("aiohttp")
    target = PUSH_LATENCY_TARGET if push else poll_interval + LATENCY_SLACK
    lines, passed = report(
        waits, poll_interval, steady, done, decided, reader.events, whole_run, target, push
    )
    if push:  # where the time goes: the call's round trip (sent, stored, answered) and the rest
        answered = {c["processInstanceId"]: c["time"] for c in sandbox.http_calls() if c.get("status") == 202}
        delivered = [answered[p] - at for p, at in decided.items() if p in answered]
        lines.insert(
            -2,
            f"  of which the callback answered after the decision (n={len(delivered):,}): "
            f"p50 {percentile(delivered, 0.5):.2f}s, p99 {percentile(delivered, 0.99):.2f}s",
        )
    return lines, passed


def report(
    waits: int,
    poll_interval: float,
    steady: dict[str, Any],
    done: dict[str, Any],
    decided: dict[str, float],
    events: dict[str, tuple[float, str]],
    whole_run: dict[str, int],
    target: float,
    push: bool,
) -> tuple[list[str], bool]:
    baseline, memory = steady["baseline"], steady["memory"]
    rss_mb = (memory["VmRSS"] - baseline["VmRSS"]) / 1024
    hwm_mb = (done["memory"]["VmHWM"] - baseline["VmHWM"]) / 1024
    cycles = steady["seconds"] / poll_interval
    cpu_per_cycle, tokens = steady["cpu"] / cycles, whole_run["token_requests"]
    calls = steady["calls"]
    made = calls["api_requests"] + calls["token_requests"]
    per_minute = made / (steady["seconds"] / 60)
    latencies = [events[p][0] - at for p, at in decided.items() if p in events]
    statuses = sorted({status for _, status in events.values()})
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    lines = [
        f"  {waits:,} waits in one triggerer loop, poll interval {poll_interval:g}s, steady window "
        f"{steady['seconds']:.0f}s ({cycles:.1f} cycles, {steady['waiting']:,} waiting)",
        f"  memory above baseline ({baseline['VmRSS'] / 1024:.0f} MB RSS): RSS +{rss_mb:.1f} MB "
        f"({1024 * rss_mb / waits:.1f} KB a wait) while waiting; peak (VmHWM) +{hwm_mb:.1f} MB over the run",
        (
            f"  CPU while waiting: {1000 * steady['cpu'] / steady['seconds']:.0f} ms a second (the watcher "
            "listing the signals)"
            if push
            else f"  CPU: {1000 * cpu_per_cycle:.0f} ms per poll cycle "
            f"({1e6 * cpu_per_cycle / waits:.0f} µs a wait a poll)"
        )
        + f"; starting the waits {steady['cpu_before']:.1f}s; whole run {done['cpu']:.1f}s",
        f"  OpenText calls (counted by the sandbox): {per_minute:,.0f} a minute, "
        f"{made / cycles / waits:.2f} a wait a poll, {calls['token_requests']} token requests in the window",
        f"  whole run: {tokens} token requests, {whole_run['api_requests']:,} API requests "
        f"({(whole_run['api_requests'] + tokens) / waits:.1f} a wait), over "
        f"{whole_run['connections']} TCP connections",
        f"  resume latency after the approval (n={len(latencies):,}): p50 {p50:.2f}s, p99 {p99:.2f}s, "
        f"max {max(latencies):.2f}s, mean {statistics.fmean(latencies):.2f}s",
    ]
    all_decided = len(latencies) == waits and statuses == ["decided"]
    checks = [
        (f"resume latency p99 {p99:.2f}s (target <= {target:g}s)", p99 <= target),
        (f"every wait resumed decided ({len(latencies):,} of {waits:,}, statuses {statuses})", all_decided),
    ]
    lines += [f"  {'PASS' if ok else 'FAIL'}  {text}" for text, ok in checks]
    return lines, all(ok for _, ok in checks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench waits", description=__doc__.splitlines()[0])
    parser.add_argument("--waits", type=int, default=1000, help="simultaneous approval waits")
    parser.add_argument("--poll-interval", type=float, default=30.0, help="seconds between a wait's polls")
    parser.add_argument("--cycles", type=int, default=2, help="poll intervals in the steady window")
    parser.add_argument("--quick", action="store_true", help="a small run: 100 waits polling every 5 s")
    parser.add_argument("--triggerer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--processes", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--push", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.triggerer:
        return run_triggerer(args)
    if args.quick:
        args.waits, args.poll_interval = 100, 5.0
    with tempfile.TemporaryDirectory(prefix="bench-waits-") as workdir:
        lines, passed = run(args.waits, args.poll_interval, args.cycles, Path(workdir))
    print("\n".join(lines), flush=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
