"""Run the project's processes on one machine: the two sandboxes and Airflow, then drive a flow end to end.

Used by ``make demo`` (``scripts/demo.py``) and by the deployment tests, so the story a person watches and
the story the tests check start, talk to and stop the same processes the same way.

- :class:`Stack` starts subprocesses in their own process groups with logs in files, watches that they
  stay up, and stops every one of them (and anything they started) on exit, Ctrl-C or SIGTERM.
- ``start_opentext_sandbox``, ``start_airflow_standalone`` (LocalExecutor) and
  ``start_airflow_components`` (the services of docker-compose.yaml) start what they say and wait until
  it answers; :class:`AirflowSite` builds the environment an Airflow installation runs with.
- :class:`ProdigyProject` is a Prodigy home: creates and marks datasets (through the project's hook),
  serves tasks, runs simulated annotators and settles their disputes as a senior reviewer.
- :class:`AirflowApi` is a small client of Airflow's REST API (``/api/v2``): unpause, trigger, wait for
  a run with progress lines, task instances, XCom, task logs and a failure report.
- :class:`Reviewer` acts as a business reviewer in OpenText over HTTP: deploys the BPMN models, finds
  the open task of a process and decides it with an outcome and a comment.
- :class:`ReleaseFlow` drives one batch from review to a consumed release with those parts.

Nothing here imports Airflow at module level; the Prodigy steps that use the project's code import it
when called.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import psutil
import requests

from scripts.configure_airflow_home import REPO, project_settings

VENV_BIN = Path(sys.executable).parent
BPMN_MODELS = REPO / "include" / "bpmn"
DEMO_TASKS = REPO / "include" / "demo" / "tasks.jsonl"
"""The demo task stream (synthetic fashion-brand NER tasks) the stories of the stack annotate."""
DEMO_DATASET_META = {"labels": ["BRAND"], "regulated": False}
STACK_MARKER = "PROJECT_STACK_ID"
"""Environment variable every started process inherits; finds their descendants when stopping."""

DAG_IDS = ("annotation_batch_approval", "dataset_release", "mlops_release_consumer")
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
UNFINISHED_TASK_STATES = frozenset({"failed", "upstream_failed"})
WAITING_STATES = frozenset({"deferred", "running", "up_for_reschedule"})
"""A task in one of these states may be a wait: deferred (no worker slot), poking, or between pokes."""
DEFERRAL_GRACE_SECONDS = 60.0
REQUEST_TIMEOUT = 30
STOP_TIMEOUT = 20.0

SENIOR_REVIEWER = "senior_reviewer"
"""Prodigy session name of the simulated senior reviewer who settles disputes."""

T = TypeVar("T")
Log = Callable[[str], None]


def say(message: str) -> None:
    print(message, flush=True)


class StackError(RuntimeError):
    """Something the stack started failed or did not answer; the message says what and shows its log."""


# --- Waiting and ports ------------------------------------------------------------------------------------


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


# --- Processes --------------------------------------------------------------------------------------------


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


# --- The sandboxes ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenTextClient:
    """Client credentials of an OpenText tenant (the sandbox's default client is ``sandbox:sandbox``)."""

    url: str
    tenant: str = "sandbox"
    client_id: str = "sandbox"
    client_secret: str = field(default="sandbox", repr=False)

    @property
    def inbox_url(self) -> str:
        return f"{self.url}/inbox"

    def connection(self) -> str:
        """``AIRFLOW_CONN_OPENTEXT_DEFAULT`` for the ``opentext_workflow`` connection type."""
        return json.dumps(
            {
                "conn_type": "opentext_workflow",
                "host": self.url,
                "login": self.client_id,
                "password": self.client_secret,
                "extra": {"tenant_id": self.tenant},
            }
        )


def start_opentext_sandbox(stack: Stack, port: int, db_path: Path, env: Mapping[str, str]) -> OpenTextClient:
    """``python -m sandbox.opentext`` on 127.0.0.1:port, state in ``db_path``; returns once it answers."""
    client = OpenTextClient(f"http://127.0.0.1:{port}")
    command = [sys.executable, "-m", "sandbox.opentext", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--db", str(db_path), "--client", f"{client.client_id}:{client.client_secret}"]
    stack.start("opentext-sandbox", command, env)
    wait_for(
        lambda: answers_http(f"{client.url}/sandbox/health"),
        timeout=60,
        what=f"the OpenText sandbox at {client.url}",
        interval=0.3,
        stack=stack,
    )
    return client


@dataclass(frozen=True)
class Annotators:
    """Simulated annotator sessions and how often they depart from the reference labels."""

    names: tuple[str, ...] = ("alice", "bob", "carol")
    seed: int = 7
    disagree: float = 0.1
    reject: float = 0.0
    ignore: float = 0.0
    flag: float = 0.0

    def arguments(self) -> list[str]:
        rates = {"disagree": self.disagree, "reject": self.reject, "ignore": self.ignore, "flag": self.flag}
        arguments = ["--sessions", ",".join(self.names), "--seed", str(self.seed)]
        for name, rate in rates.items():
            arguments += [f"--{name}", str(rate)]
        return arguments


@dataclass(frozen=True)
class ProdigyProject:
    """A Prodigy installation: its home with ``prodigy.json``, and the database that file names."""

    home: Path
    config: dict[str, Any]

    @classmethod
    def sqlite(cls, home: Path) -> ProdigyProject:
        """Prodigy's default: SQLite ``prodigy.db`` in its home."""
        return cls(
            home, {"db": "sqlite", "db_settings": {"sqlite": {"name": "prodigy.db", "path": str(home)}}}
        )

    def write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "prodigy.json").write_text(json.dumps(self.config, indent=2) + "\n")

    def connection(self) -> str:
        """``AIRFLOW_CONN_PRODIGY_DEFAULT``: the ``prodigy`` connection carries prodigy.json's db settings."""
        extra = {"db": self.config["db"], "db_settings": self.config["db_settings"]}
        return json.dumps({"conn_type": "prodigy", "extra": extra})

    def update_dataset(
        self, dataset: str, meta: Mapping[str, Any], *, create: bool = False
    ) -> dict[str, Any]:
        """Create the dataset with ``meta``, or merge ``meta`` into it, through the project's ProdigyHook."""
        with connection_variables({"AIRFLOW_CONN_PRODIGY_DEFAULT": self.connection()}):
            from prodigy_opentext.hooks.prodigy import ProdigyHook

            hook = ProdigyHook()
            if create:
                hook.add_dataset(dataset, dict(meta))
            return hook.set_meta(dataset, dict(meta))

    def serve(self, stack: Stack, dataset: str, source: Path, port: int, env: Mapping[str, str]) -> str:
        """``python -m sandbox.prodigy serve`` with feed overlap (every annotator sees every task)."""
        url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "sandbox.prodigy", "serve", dataset, "--source", str(source)]
        command += ["--host", "127.0.0.1", "--port", str(port), "--feed-overlap"]
        stack.start("prodigy-sandbox", command, {**env, "PRODIGY_HOME": str(self.home)})
        wait_for(
            lambda: answers_http(f"{url}/project"),
            timeout=120,
            what=f"the Prodigy sandbox at {url}",
            interval=0.3,
            stack=stack,
        )
        return url

    def annotate(
        self, stack: Stack, url: str, dataset: str, annotators: Annotators, env: Mapping[str, str]
    ) -> str:
        """Answer the server's whole stream as each session; returns the annotators' closing line."""
        command = [sys.executable, "-m", "sandbox.prodigy", "annotate", "--url", url, "--dataset", dataset]
        command += annotators.arguments()
        output = stack.run("annotators", command, {**env, "PRODIGY_HOME": str(self.home)})
        return output.strip().splitlines()[-1]

    def adjudicate_disputes(self, dataset: str, reviewer: str) -> int:
        """Settle the dataset's open disputes as a senior reviewer: the answer most annotators gave wins.

        Each decision goes back into the dataset as an adjudicated example (``_adjudicated: true``, in the
        reviewer's session), as escalated disputes come back from OpenText, so the batch has none open when
        the release validates it. Returns how many disputes were settled.
        """
        with connection_variables({"AIRFLOW_CONN_PRODIGY_DEFAULT": self.connection()}):
            from prodigy_opentext.core.agreement import decision_of
            from prodigy_opentext.core.consensus import build_consensus
            from prodigy_opentext.hooks.prodigy import ProdigyHook

            hook = ProdigyHook()
            session = f"{dataset}-{reviewer}"
            decided = {"_adjudicated": True, "_annotator_id": session, "_session_id": session}
            adjudicated = []
            for dispute in build_consensus(hook.iter_examples(dataset)).disputes:
                votes = Counter(decision_of(version) for version in dispute.versions)
                majority = votes.most_common(1)[0][0]
                winner = next(v for v in dispute.versions if decision_of(v) == majority)
                unflagged = {key: value for key, value in winner.items() if key != "flagged"}
                adjudicated.append({**unflagged, **decided, "_timestamp": int(time.time())})
            if adjudicated:
                hook.add_examples(dataset, adjudicated, session=session)
            return len(adjudicated)

    def annotated_batch(
        self,
        stack: Stack,
        dataset: str,
        meta: Mapping[str, Any],
        source: Path,
        port: int,
        env: Mapping[str, str],
        annotators: Annotators,
    ) -> AnnotatedBatch:
        """A dataset created with ``meta``, served from ``source``, fully annotated, disputes adjudicated."""
        self.write_config()
        self.update_dataset(dataset, meta, create=True)
        url = self.serve(stack, dataset, source, port, env)
        annotated = self.annotate(stack, url, dataset, annotators, env)
        return AnnotatedBatch(url, annotated, self.adjudicate_disputes(dataset, SENIOR_REVIEWER))


class AnnotatedBatch(NamedTuple):
    """A served, annotated dataset: the Prodigy server, the annotators' closing line, disputes settled."""

    url: str
    annotators_summary: str
    adjudicated: int


@contextmanager
def connection_variables(connections: Mapping[str, str]) -> Iterator[None]:
    """Expose ``AIRFLOW_CONN_*`` variables to hooks used in this process, restoring what was there."""
    saved = {name: os.environ.get(name) for name in connections}
    os.environ.update(connections)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --- Airflow processes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AirflowSite:
    """Where one Airflow installation keeps its state and answers."""

    home: Path
    data_dir: Path
    api_port: int
    sql_alchemy_conn: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def password_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"

    def environment(self, base: Mapping[str, str], settings: Mapping[str, str] = ()) -> dict[str, str]:
        """``base`` without its Airflow variables, plus this site's settings and the project's.

        The project's ``airflow.cfg`` options (dags/plugins folders, no examples) are given as variables,
        so any AIRFLOW_HOME works. The log servers of workers and triggerer get free ports, so a second
        installation on the machine does not collide with a running one; parallelism and api-server
        workers are sized for a laptop.
        """
        env = {k: v for k, v in base.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
        for (section, key), value in project_settings(self.home).items():
            env[f"AIRFLOW__{section.upper()}__{key.upper()}"] = value
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(REPO), str(REPO / "dags"), base.get("PYTHONPATH")])
                ),
                "PROJECT_DATA_DIR": str(self.data_dir),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_alchemy_conn,
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.data_dir / "airflow-logs"),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__CORE__PARALLELISM": "8",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            }
        )
        env.update(settings)
        return env


def airflow_command(*args: str) -> list[str]:
    return [str(VENV_BIN / "airflow"), *args]


def start_airflow_standalone(stack: Stack, site: AirflowSite, env: Mapping[str, str]) -> AirflowApi:
    """``airflow standalone`` (api-server, scheduler, dag-processor, triggerer; LocalExecutor)."""
    stack.start("airflow-standalone", airflow_command("standalone"), env)
    return connect_airflow(stack, site)


AIRFLOW_COMPONENTS = {
    "api-server": ("api-server",),
    "scheduler": ("scheduler",),
    "dag-processor": ("dag-processor",),
    "triggerer": ("triggerer",),
    "celery-worker": ("celery", "worker", "--without-mingle", "--without-gossip"),
}
"""The services of the deployable topology (docker-compose.yaml), as ``airflow`` subcommands."""


def start_airflow_components(
    stack: Stack, site: AirflowSite, env: Mapping[str, str], components: Mapping[str, tuple[str, ...]]
) -> AirflowApi:
    """``airflow db migrate``, then each component as its own process, as in a real deployment."""
    stack.run("airflow-db-migrate", airflow_command("db", "migrate"), env)
    for name, args in components.items():
        stack.start(f"airflow-{name}", airflow_command(*args), env)
    return connect_airflow(stack, site)


def connect_airflow(stack: Stack, site: AirflowSite, timeout: float = 300) -> AirflowApi:
    """Wait until the api-server answers and reports every component healthy; log in as admin."""
    wait_for(
        lambda: answers_http(f"{site.url}/api/v2/version"),
        timeout=timeout,
        what=f"Airflow's api-server at {site.url}",
        interval=1,
        stack=stack,
    )
    password = wait_for(
        lambda: _admin_password(site.password_file),
        timeout=60,
        what=f"the admin password in {site.password_file}",
        stack=stack,
    )
    api = AirflowApi(site.url, "admin", password)
    wait_for(
        api.healthy, timeout=timeout, what="a healthy scheduler, triggerer and dag-processor", stack=stack
    )
    return api


def _admin_password(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("admin")
    except (OSError, ValueError):
        return None


# --- Airflow REST API -------------------------------------------------------------------------------------


class AirflowApi:
    """The calls a person makes in the UI, through Airflow's REST API (``/api/v2``, bearer token)."""

    def __init__(self, url: str, username: str, password: str) -> None:
        self.url = url.rstrip("/")
        self.username = username
        self.password = password
        self.http = requests.Session()
        self._reported_states: dict[tuple[str, str, str], str] = {}

    def _login(self) -> None:
        response = requests.post(
            f"{self.url}/auth/token",
            json={"username": self.username, "password": self.password},
            timeout=REQUEST_TIMEOUT,
        )
        if not response.ok:
            raise StackError(
                f"Airflow login as {self.username} failed: {response.status_code} {response.text}"
            )
        self.http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """A call to ``/api/v2`` + path; logs in first and again once on 401; errors name the call."""
        if "Authorization" not in self.http.headers:
            self._login()
        url = f"{self.url}/api/v2{path}"
        response = self.http.request(method, url, timeout=REQUEST_TIMEOUT, **kwargs)
        if response.status_code == 401:
            self._login()
            response = self.http.request(method, url, timeout=REQUEST_TIMEOUT, **kwargs)
        if not response.ok:
            raise StackError(f"{method} {url} answered {response.status_code}: {response.text[:1000]}")
        return response.json() if response.content else None

    def healthy(self) -> bool:
        health = self.request("GET", "/monitor/health")
        parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        return all((health.get(part) or {}).get("status") == "healthy" for part in parts)

    def run_url(self, dag_id: str, run_id: str) -> str:
        """The run's page in the Airflow UI."""
        return f"{self.url}/dags/{dag_id}/runs/{requests.utils.quote(run_id, safe='')}"

    # DAGs

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", f"/dags/{dag_id}")
        except StackError as error:
            if " answered 404" in str(error):
                return None
            raise

    def import_errors(self) -> list[dict[str, Any]]:
        return self.request("GET", "/importErrors")["import_errors"]

    def wait_for_dags(self, dag_ids: tuple[str, ...], timeout: float, stack: Stack | None = None) -> None:
        """Wait until the dag-processor has parsed every DAG; an import error fails at once."""

        def parsed() -> bool:
            missing = [dag_id for dag_id in dag_ids if not self.dag(dag_id)]
            errors = self.import_errors() if missing else []
            if errors:
                traces = "\n".join(f"{e['filename']}:\n{e['stack_trace']}" for e in errors)
                raise StackError(f"the DAGs {', '.join(missing)} did not load; import errors:\n{traces}")
            return not missing

        wait_for(parsed, timeout=timeout, what=f"the DAGs {', '.join(dag_ids)}", interval=2, stack=stack)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})

    def wait_until_idle(self, dag_id: str, timeout: float, stack: Stack | None = None) -> None:
        """Wait until a just-unpaused DAG's due scheduled run, if any, exists and has finished."""

        def idle() -> bool:
            next_run = (self.dag(dag_id) or {}).get("next_dagrun_run_after")
            due = next_run is not None and _parse_time(next_run) <= datetime.now(UTC)
            active = self.runs(dag_id, state=["queued", "running"])
            return not due and not active

        wait_for(idle, timeout=timeout, what=f"{dag_id}'s scheduled run to finish", interval=2, stack=stack)

    # Runs

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> dict[str, Any]:
        body = {"logical_date": None, "conf": dict(conf or {})}
        return self.request("POST", f"/dags/{dag_id}/dagRuns", json=body)

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{requests.utils.quote(run_id, safe='')}")

    def runs(self, dag_id: str, **params: Any) -> list[dict[str, Any]]:
        """Runs of the DAG, oldest first; params filter as the API does (``state=[...]``, ``run_type``)."""
        params = {"order_by": "run_after", "limit": 100, **params}
        return self.request("GET", f"/dags/{dag_id}/dagRuns", params=params)["dag_runs"]

    def wait_for_new_run(
        self,
        dag_id: str,
        matches: Callable[[dict[str, Any]], bool],
        timeout: float,
        stack: Stack | None = None,
    ) -> dict[str, Any]:
        """The first run of ``dag_id`` that ``matches`` (for runs another DAG or an asset started)."""
        return wait_for(
            lambda: next((run for run in self.runs(dag_id) if matches(run)), None),
            timeout=timeout,
            what=f"a run of {dag_id}",
            interval=2,
            stack=stack,
        )

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float,
        *,
        until: Callable[[dict[str, Any], list[dict[str, Any]]], bool] | None = None,
        log: Log = say,
        stack: Stack | None = None,
    ) -> dict[str, Any]:
        """Wait until the run finishes (or ``until(run, task_instances)`` holds), logging task changes."""

        def check() -> dict[str, Any] | None:
            run = self.run(dag_id, run_id)
            tasks = self.task_instances(dag_id, run_id)
            for task in tasks:
                key = (dag_id, run_id, task_label(task))
                if task["state"] and self._reported_states.get(key) != task["state"]:
                    self._reported_states[key] = task["state"]
                    log(f"    {dag_id} {key[2]}: {task['state']}")
            done = until(run, tasks) if until else run["state"] in TERMINAL_RUN_STATES
            return run if done or run["state"] in TERMINAL_RUN_STATES else None

        return wait_for(check, timeout=timeout, what=f"run {run_id} of {dag_id}", interval=2, stack=stack)

    # Task instances

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/dags/{dag_id}/dagRuns/{requests.utils.quote(run_id, safe='')}/taskInstances"
        return self.request("GET", path, params={"limit": 100})["task_instances"]

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1
    ) -> Any:
        path = (
            f"/dags/{dag_id}/dagRuns/{requests.utils.quote(run_id, safe='')}/taskInstances/{task_id}"
            f"/xcomEntries/{key}"
        )
        return self.request("GET", path, params={"map_index": map_index, "deserialize": True})["value"]

    def task_log(self, dag_id: str, run_id: str, task: Mapping[str, Any]) -> str:
        """The task's log for its latest try, one line per record."""
        path = (
            f"/dags/{dag_id}/dagRuns/{requests.utils.quote(run_id, safe='')}/taskInstances/"
            f"{task['task_id']}/logs/{max(task.get('try_number') or 1, 1)}"
        )
        body = self.request(
            "GET", path, params={"map_index": task.get("map_index", -1), "full_content": True}
        )
        return "\n".join(_log_line(record) for record in body.get("content") or [])

    def failure_report(self, dag_id: str, run_id: str, tail: int = 40) -> str:
        """Each failed task of the run with the end of its log: what to read when a run did not succeed."""
        lines = []
        tasks = sorted(self.task_instances(dag_id, run_id), key=lambda t: t["state"] != "failed")
        for task in tasks:
            if task["state"] in UNFINISHED_TASK_STATES:
                lines.append(f"--- {dag_id} / {task_label(task)}: {task['state']}")
                if task["state"] == "failed":
                    lines.extend(self.task_log(dag_id, run_id, task).splitlines()[-tail:])
        return "\n".join(lines) or f"{dag_id} {run_id}: no failed task"


def task_label(task: Mapping[str, Any]) -> str:
    index = task.get("map_index", -1)
    return task["task_id"] if index is None or index < 0 else f"{task['task_id']}[{index}]"


def _log_line(record: Any) -> str:
    """One structured task-log record as a line; an exception as its type, message and innermost frames."""
    if not isinstance(record, dict):
        return str(record)
    lines = [f"{record.get('level', '')} {record.get('event', '')}".strip()]
    for error in record.get("error_detail") or []:
        lines.append(f"  {error.get('exc_type')}: {error.get('exc_value')}")
        for frame in (error.get("frames") or [])[-3:]:
            lines.append(f"    at {frame.get('filename')}:{frame.get('lineno')} {frame.get('name')}")
    return "\n".join(lines)


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _after(timestamp: str, start: str) -> bool:
    return _parse_time(timestamp) >= _parse_time(start)


# --- A reviewer in OpenText -------------------------------------------------------------------------------


class Reviewer:
    """A business reviewer working in OpenText through its REST API (the sandbox's ``X-Sandbox-User``)."""

    def __init__(self, client: OpenTextClient, log: Log = say) -> None:
        self.client = client
        self.api = f"{client.url}/workflow/v1"
        self.log = log
        self.http = requests.Session()

    def _login(self) -> None:
        response = requests.post(
            f"{self.client.url}/tenants/{self.client.tenant}/oauth2/token",
            json={
                "grant_type": "client_credentials",
                "client_id": self.client.client_id,
                "client_secret": self.client.client_secret,
            },
            timeout=REQUEST_TIMEOUT,
        )
        if not response.ok:
            raise StackError(
                f"OpenText login at {self.client.url} failed: {response.status_code} {response.text}"
            )
        self.http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def request(self, method: str, path: str, user: str | None = None, **kwargs: Any) -> Any:
        if "Authorization" not in self.http.headers:
            self._login()
        headers = {"X-Sandbox-User": user} if user else {}
        url = self.api + path
        response = self.http.request(method, url, headers=headers, timeout=REQUEST_TIMEOUT, **kwargs)
        if response.status_code == 401:
            self._login()
            response = self.http.request(method, url, headers=headers, timeout=REQUEST_TIMEOUT, **kwargs)
        if not response.ok:
            raise StackError(
                f"OpenText {method} {url} answered {response.status_code}: {response.text[:1000]}"
            )
        return response.json() if response.content else None

    def deploy_models(self, folder: Path = BPMN_MODELS) -> dict[str, dict[str, Any]]:
        """Deploy every ``*.bpmn20.xml`` in ``folder``; returns the deployed models by process key."""
        deployed = {}
        for path in sorted(folder.glob("*.bpmn20.xml")):
            model = self.request(
                "POST", "/runtime/models", json={"modelType": "xml", "modelContent": path.read_text()}
            )
            deployed[model["key"]] = model
        return deployed

    def open_tasks(self, **filters: Any) -> list[dict[str, Any]]:
        params = {
            "sort": "createTime",
            "order": "asc",
            "count": 100,
            "includeProcessVariables": True,
            **filters,
        }
        return self.request("GET", "/tasks", params=params).get("_embedded", {}).get("tasks", [])

    def find_task(self, process_key: str, variables: Mapping[str, Any]) -> dict[str, Any] | None:
        """The oldest open task of a ``process_key`` instance with (at least) these process variables."""
        for task in self.open_tasks(processDefinitionKey=process_key):
            values = {v["name"]: v.get("value") for v in task.get("variables") or []}
            if all(values.get(name) == value for name, value in variables.items()):
                return task
        return None

    def wait_for_task(
        self, process_key: str, variables: Mapping[str, Any], timeout: float, stack: Stack | None = None
    ) -> dict[str, Any]:
        described = ", ".join(f"{k}={v}" for k, v in variables.items())
        return wait_for(
            lambda: self.find_task(process_key, variables),
            timeout=timeout,
            what=f"an open {process_key} task ({described})",
            interval=1,
            stack=stack,
        )

    def task_url(self, task: Mapping[str, Any]) -> str:
        """The task's page in the reviewer inbox."""
        return f"{self.client.inbox_url}/tasks/{task['id']}"

    def decide(self, task: Mapping[str, Any], user: str, outcome: str, comment: str) -> None:
        """Claim the task, comment on its process and complete it with ``outcome``, as ``user``."""
        self.request("POST", f"/tasks/{task['id']}", user=user, json={"action": "claim", "assignee": user})
        path = f"/process-instances/{task['processInstanceId']}/comments"
        self.request("POST", path, user=user, json={"message": comment, "taskId": task["id"]})
        self.request(
            "POST",
            f"/tasks/{task['id']}",
            user=user,
            json={"action": "complete", "assignee": user, "outcome": outcome},
        )
        self.log(f"    {user} {outcome} '{task['name']}': {comment}")


# --- The governed release, end to end ---------------------------------------------------------------------


class FlowFailed(Exception):
    """A run ended in another state than success; the message holds its failed tasks' logs."""


SME_REVIEWER = "sme.reviewer@example.com"
RELEASE_MANAGER = "release.manager@example.com"
BATCH_PROCESS, SIGNOFF_PROCESS = "annotation_batch_approval", "dataset_release_signoff"
BATCH_DAG, RELEASE_DAG, CONSUMER_DAG = DAG_IDS
Step = Callable[[str, str | None], None]


def print_step(title: str, link: str | None) -> None:
    say(f"  {title}" + (f"\n    {link}" if link else ""))


@dataclass
class ReleaseFlow:
    """One annotated Prodigy batch driven from review to a consumed release, reviewers simulated.

    :meth:`enable_dags` unpauses the project's DAGs (once their first scheduled run has passed, so no run
    but ours picks the batch up); :meth:`run` marks the batch ready, triggers batch approval, approves the
    OpenText task as the SME once it exists, follows the release run that approval starts, approves its
    sign-off as the release manager, and waits for the release and the MLOps consumer run. ``step`` is
    told each milestone with its link. A run that does not succeed raises :class:`FlowFailed`.
    """

    api: AirflowApi
    reviewer: Reviewer
    prodigy: ProdigyProject
    dataset: str
    stack: Stack | None = None
    step: Step = print_step
    review_pause: float = 0.0
    timeout: float = 900.0
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    approvals: list[dict[str, Any]] = field(default_factory=list)
    release: dict[str, Any] | None = None
    consumed: list[dict[str, Any]] | None = None

    def enable_dags(self) -> None:
        self.api.wait_for_dags(DAG_IDS, timeout=self.timeout, stack=self.stack)
        for dag_id in DAG_IDS:
            self.api.set_paused(dag_id, False)
        self.api.wait_until_idle(BATCH_DAG, timeout=self.timeout, stack=self.stack)

    def run(self) -> None:
        self.prodigy.update_dataset(self.dataset, {"review": {"status": "ready"}})
        batch = self.api.trigger(BATCH_DAG, {"dataset": self.dataset})
        self.step(f"{self.dataset} marked ready for review; triggered {BATCH_DAG}", self._url(batch))
        task, waits = self._open_task(batch, BATCH_PROCESS)
        self.step(
            f"OpenText task '{task['name']}' waits for a reviewer; in Airflow: {', '.join(waits)}",
            self.reviewer.task_url(task),
        )
        if self.review_pause > 0:
            self.step(
                f"The reviewer acts in {self.review_pause:.0f}s: look at the run and the inbox now", None
            )
            time.sleep(self.review_pause)
        self._approve(
            task, waits, SME_REVIEWER, "Spot-checked the batch: labels and agreement are acceptable."
        )
        self._finish(batch)

        release = self.api.wait_for_new_run(
            RELEASE_DAG, self._for_dataset, timeout=self.timeout, stack=self.stack
        )
        self.step(f"Batch approval started release run {release['dag_run_id']}", self._url(release))
        signoff, waits = self._open_task(release, SIGNOFF_PROCESS)
        self.step(
            f"OpenText task '{signoff['name']}' waits for the release manager; "
            f"in Airflow: {', '.join(waits)}",
            self.reviewer.task_url(signoff),
        )
        self._approve(signoff, waits, RELEASE_MANAGER, "Validation passed: released for training.")
        released = self._finish(release)
        self.release = self.api.xcom(RELEASE_DAG, release["dag_run_id"], "publish")
        self.step(f"Release of {self.release['examples']} examples written", self.release["path"])

        consumer = self.api.wait_for_new_run(
            CONSUMER_DAG,
            lambda run: _after(run["run_after"], released["start_date"]),
            self.timeout,
            self.stack,
        )
        self.step("The release's asset event started the MLOps consumer", self._url(consumer))
        self._finish(consumer)
        self.consumed = self.api.xcom(CONSUMER_DAG, consumer["dag_run_id"], "load_for_training")

    def summary(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "approvals": self.approvals,
            "release": self.release,
            "consumed": self.consumed,
        }

    def _url(self, run: Mapping[str, Any]) -> str:
        return self.api.run_url(run["dag_id"], run["dag_run_id"])

    def _for_dataset(self, run: Mapping[str, Any]) -> bool:
        return (run.get("conf") or {}).get("dataset") == self.dataset

    def _open_task(self, run: Mapping[str, Any], process_key: str) -> tuple[dict[str, Any], list[str]]:
        """The run's open OpenText task once Airflow waits for it, with the waiting tasks' states.

        A wait that has not deferred is given ``DEFERRAL_GRACE_SECONDS`` to do so (a sensor defers after its
        first read). A run that ends before its OpenText task exists fails the flow.
        """
        found: dict[str, Any] = {}

        def waiting_for_reviewer(_run: Mapping[str, Any], tasks: list[dict[str, Any]]) -> bool:
            waits = {task_label(t): t["state"] for t in tasks if t["state"] in WAITING_STATES}
            found["waits"] = [f"{label} {state}" for label, state in waits.items()]
            if waits and "task" not in found:
                task = self.reviewer.find_task(process_key, {"dataset": self.dataset})
                found.update({"task": task, "at": time.monotonic()} if task else {})
            if "task" not in found:
                return False
            return "deferred" in waits.values() or time.monotonic() - found["at"] > DEFERRAL_GRACE_SECONDS

        ended = self.api.wait_for_run(
            run["dag_id"], run["dag_run_id"], self.timeout, until=waiting_for_reviewer, stack=self.stack
        )
        if "task" not in found:
            self._failed(ended, f"before waiting for a {process_key} decision in OpenText")
        return found["task"], found["waits"]

    def _approve(self, task: Mapping[str, Any], waits: list[str], user: str, comment: str) -> None:
        self.reviewer.decide(task, user, "approved", comment)
        self.approvals.append(
            {
                "task": task["name"],
                "airflow_waits": waits,
                "task_id": task["id"],
                "process_instance_id": task["processInstanceId"],
                "reviewer": user,
                "outcome": "approved",
                "comment": comment,
                "url": self.reviewer.task_url(task),
            }
        )

    def _finish(self, run: Mapping[str, Any]) -> dict[str, Any]:
        ended = self.api.wait_for_run(run["dag_id"], run["dag_run_id"], self.timeout, stack=self.stack)
        self.runs[run["dag_id"]] = {
            "run_id": run["dag_run_id"],
            "state": ended["state"],
            "url": self._url(run),
        }
        if ended["state"] != "success":
            self._failed(ended, "")
        return ended

    def _failed(self, run: Mapping[str, Any], when: str) -> None:
        self.runs[run["dag_id"]] = {"run_id": run["dag_run_id"], "state": run["state"], "url": self._url(run)}
        report = self.api.failure_report(run["dag_id"], run["dag_run_id"])
        raise FlowFailed(f"{run['dag_id']} run {run['dag_run_id']} ended {run['state']} {when}:\n{report}")


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
