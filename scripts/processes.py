"""Process supervision for the project's scripts: start, watch and stop everything one run starts.

:class:`Stack` starts subprocesses in their own process groups with logs in files, watches that they stay
up, and stops every one of them (and anything they started) on exit, Ctrl-C or SIGTERM. Used by
``make demo`` and by the deployment and browser tests, so the story a person watches and the story the
tests check start and stop their processes the same way. Nothing here imports Airflow.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil
import requests

from scripts.configure_airflow_home import REPO

VENV_BIN = Path(sys.executable).parent
STACK_MARKER = "PROJECT_STACK_ID"
"""Environment variable every started process inherits; finds their descendants when stopping."""
STOP_TIMEOUT = 20.0

T = TypeVar("T")
Log = Callable[[str], None]


def say(message: str) -> None:
    print(message, flush=True)


class StackError(RuntimeError):
    """Something the stack started failed or did not answer; the message says what and shows its log."""


def wait_for(
    check: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 1.0,
    stack: Stack | None = None,
) -> T:
    """Call ``check`` until it returns something truthy; raise :class:`StackError` after ``timeout`` s.

    With ``stack``, a process of the stack that exits meanwhile fails the wait at once, with its log.
    """
    deadline = time.monotonic() + timeout
    while True:
        if stack is not None:
            stack.check_alive()
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise StackError(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, port)) == 0


def require_free_ports(ports: Mapping[str, int]) -> None:
    """Fail with one message naming every port that something already listens on, and what needed it."""
    taken = [f"{port} (for {name})" for name, port in ports.items() if port_in_use(port)]
    if taken:
        raise StackError(
            f"port {', '.join(taken)} is already in use on 127.0.0.1: stop what listens there "
            "(an earlier demo?) or choose other ports (see the environment variables in scripts/demo.py)"
        )


def answers_http(url: str) -> bool:
    """True once ``url`` returns any HTTP response."""
    try:
        requests.get(url, timeout=5)
    except requests.RequestException:
        return False
    return True


@dataclass
class ManagedProcess:
    """One started subprocess: the leader of its own process group, output in ``log_path``."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Stack:
    """The processes of one run, started in order and stopped together, whatever ends the run.

    Every process gets ``PROJECT_STACK_ID=<id>`` in its environment; stopping signals each process group,
    then every process still carrying that id (daemons that left their group included), SIGTERM first and
    SIGKILL after ``STOP_TIMEOUT`` seconds.
    """

    def __init__(self, log_dir: Path, log: Log = say) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.id = secrets.token_hex(8)
        self.log = log
        self.processes: list[ManagedProcess] = []
        self._exiting = False
        self._previous_handlers: dict[int, Any] = {}

    def __enter__(self) -> Stack:
        atexit.register(self.stop_all)
        self._previous_handlers = {
            signum: signal.signal(signum, self._exit_on_signal) for signum in (signal.SIGTERM, signal.SIGHUP)
        }
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop_all()
        finally:
            atexit.unregister(self.stop_all)
            for signum, handler in self._previous_handlers.items():
                signal.signal(signum, handler)

    def _exit_on_signal(self, signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` plus what every process of the stack needs: the marker, the venv first on PATH."""
        path = os.pathsep.join([str(VENV_BIN), env.get("PATH", os.environ.get("PATH", ""))])
        return {**env, STACK_MARKER: self.id, "PATH": path, "PYTHONUNBUFFERED": "1"}

    def start(
        self, name: str, command: list[str], env: Mapping[str, str], cwd: Path = REPO
    ) -> ManagedProcess:
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log_file:
            popen = subprocess.Popen(
                command,
                cwd=cwd,
                env=self.environment(env),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = ManagedProcess(name, popen, log_path)
        self.processes.append(process)
        return process

    def run(self, name: str, command: list[str], env: Mapping[str, str], timeout: float = 600) -> str:
        """Run a command to completion (its output in the log file); a failure raises with the log's end."""
        process = self.start(name, command, env)
        try:
            process.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._stop([process], _descendants_of(process.pid))
            raise StackError(f"{name} did not finish in {timeout:.0f}s:\n{process.log_tail()}") from None
        finally:
            self.processes.remove(process)
        if process.popen.returncode != 0:
            raise StackError(f"{name} exited {process.popen.returncode}:\n{process.log_tail()}")
        return process.log_path.read_text(errors="replace")

    def check_alive(self) -> None:
        """Raise :class:`StackError` with its log when a process of the stack has exited."""
        for process in self.processes:
            if not process.running():
                raise StackError(
                    f"{process.name} exited with status {process.popen.returncode} "
                    f"(log {process.log_path}):\n{process.log_tail()}"
                )

    def marked_processes(self) -> list[psutil.Process]:
        """Every process on the machine still carrying this stack's marker."""
        return processes_with_env(STACK_MARKER, self.id)

    def stop_all(self) -> None:
        """Stop every process, newest first; afterwards no process carrying the stack's marker is left."""
        if self._exiting:
            return
        self._exiting = True
        try:
            self._stop(list(reversed(self.processes)), self.marked_processes)
            self.processes.clear()
        finally:
            self._exiting = False

    def _stop(self, processes: list[ManagedProcess], others: Callable[[], list[psutil.Process]]) -> None:
        """SIGTERM the processes' groups and ``others()``; SIGKILL what still runs after STOP_TIMEOUT."""
        groups = [p.pid for p in processes if p.running()]
        _signal_all(groups, others(), signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT

        def still_running() -> list[str]:
            # poll() reaps exited children, so a zombie group leader does not count as running
            return [p.name for p in processes if p.running()] + [_describe(p) for p in others()]

        while time.monotonic() < deadline and still_running():
            time.sleep(0.2)
        if leftovers := still_running():
            self.log(f"still running after {STOP_TIMEOUT:.0f}s, killing: {', '.join(leftovers)}")
            _signal_all(groups, others(), signal.SIGKILL)
        for process in processes:
            try:
                process.popen.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.log(f"{process.name} (pid {process.pid}) did not exit after SIGKILL")
        gone_by = time.monotonic() + STOP_TIMEOUT  # a killed grandchild takes a moment to go
        while others() and time.monotonic() < gone_by:
            time.sleep(0.1)


def processes_with_env(name: str, value: str) -> list[psutil.Process]:
    """Processes whose environment has ``name=value`` (those this user may read)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.pid != os.getpid() and _alive(process) and process.environ().get(name) == value:
                found.append(process)
        except (psutil.Error, OSError):
            continue
    return found


def _descendants_of(pid: int) -> Callable[[], list[psutil.Process]]:
    """The live descendants of ``pid`` as they are now (they stay found after their parent exits)."""
    try:
        found = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        found = []
    return lambda: [p for p in found if _alive(p)]


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid} {' '.join(process.cmdline())[:80]}"
    except psutil.Error:
        return str(process.pid)


def _signal_all(groups: list[int], processes: list[psutil.Process], signum: int) -> None:
    for pgid in groups:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum)
    for process in processes:
        with suppress(psutil.Error):
            process.send_signal(signum)


SCRATCH_MARKER = ".scratch-directory"


def reset_directory(path: Path) -> Path:
    """An empty scratch directory at ``path``; only a directory this function made before is emptied.

    A marker file tells such a directory from one holding real data (``DEMO_DATA_DIR=data`` would
    otherwise delete real releases and the audit log): anything else that is not empty is refused.
    """
    if path.exists() and any(path.iterdir()):
        if not (path / SCRATCH_MARKER).exists():
            raise StackError(f"{path} is not empty and was not made by the demo: refusing to empty it")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / SCRATCH_MARKER).touch()
    return path
