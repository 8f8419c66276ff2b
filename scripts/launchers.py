"""Starting what a run of the project needs, and waiting until it answers.

The OpenText sandbox, a Prodigy installation (its home, datasets, served tasks, simulated annotators), the
MLflow tracking server (from its own virtualenv, ``.venv-mlflow``), and Airflow: ``airflow standalone``
(LocalExecutor, as ``make demo`` runs it) or each component of docker-compose.yaml as its own process (the
CeleryExecutor test). The Prodigy steps that use the project's hook import it when called, so importing
this module does not import Airflow.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import requests

from scripts.airflow_api import AirflowApi
from scripts.configure_airflow_home import REPO, SQLITE_ONLY_KEYS, project_settings
from scripts.processes import VENV_BIN, Stack, StackError, answers_http, free_port, wait_for

DEMO_TASKS = REPO / "include" / "demo" / "tasks.jsonl"
"""The demo task stream (synthetic fashion-brand NER tasks) the stories annotate."""
REVIEWER_PASSWORD = "sandbox"
"""The password of every person in the sandbox's directory (``sandbox/opentext/directory.json``)."""
DEMO_DATASET_META = {
    "labels": ["BRAND"],
    "regulated": False,
    "annotator_emails": {
        "alice": "alice@example.com",
        "bob": "bob@example.com",
        "carol": "carol@example.com",
    },
    "qa_review": {
        "rework_scope": "stratum",
        "instructions": "Mark every brand name, and nothing else, as BRAND.",
    },
}
"""The demo dataset's meta: its label scheme, who each Prodigy session is in OpenText (nobody who
annotated a batch may approve it), and its QA settings (its settled batches go through QA before their
approval; every answer of an annotator and label with a failure goes to rework)."""


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

    def call_airflow_back(self, airflow_url: str, token: str) -> None:
        """Point the models' decision callbacks at ``airflow_url`` (the sandbox's tenant configuration)."""
        from prodigy_opentext.decision_callbacks import URL_PREFIX

        settings = {
            "airflow_callback_url": f"{airflow_url}{URL_PREFIX}/decisions",
            "airflow_callback_token": token,
        }
        requests.put(f"{self.url}/sandbox/config", json=settings, timeout=30).raise_for_status()

    def http_calls(self) -> list[dict[str, Any]]:
        """The HttpTask requests the models sent, and how each went."""
        return requests.get(f"{self.url}/sandbox/http-calls", timeout=30).json()["calls"]

    def connection(self, user: str | None = None) -> str:
        """An ``opentext_workflow`` connection as ``AIRFLOW_CONN_*`` JSON: the client's own (Airflow's
        ``opentext_default``), or ``user``'s, whose password-grant token makes them the actor."""
        extra: dict[str, Any] = {"tenant_id": self.tenant}
        if user is not None:
            extra |= {"grant_type": "password", "username": user, "password": REVIEWER_PASSWORD}
        return json.dumps(
            {
                "conn_type": "opentext_workflow",
                "host": self.url,
                "login": self.client_id,
                "password": self.client_secret,
                "extra": extra,
            }
        )


def start_opentext_sandbox(stack: Stack, port: int, db_path: Path, env: Mapping[str, str]) -> OpenTextClient:
    """``python -m sandbox.opentext`` on 127.0.0.1:port, state in ``db_path``; returns once it answers."""
    client = OpenTextClient(f"http://127.0.0.1:{port}")
    command = [sys.executable, "-m", "sandbox.opentext", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--db", str(db_path)]
    stack.start("opentext-sandbox", command, env)
    wait_for(
        lambda: answers_http(f"{client.url}/sandbox/health"),
        timeout=60,
        what=f"the OpenText sandbox at {client.url}",
        interval=0.3,
        stack=stack,
    )
    return client


MLFLOW_SERVER_ENVIRONMENT = {
    # MLflow's job runner serves GenAI evaluation jobs: seven more processes that tracking runs do not use.
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}
"""What the MLflow tracking server runs with, wherever the project starts it (docker-compose.yaml too)."""


def mlflow_server_binary() -> Path:
    """``mlflow`` of the server's virtualenv: ``PROJECT_MLFLOW_SERVER`` (the Makefile sets it), else
    ``.venv-mlflow/bin/mlflow`` (``make setup`` builds it)."""
    return Path(os.environ.get("PROJECT_MLFLOW_SERVER") or REPO / ".venv-mlflow" / "bin" / "mlflow")


def mlflow_server_command(binary: Path, port: int, store: Path, host: str = "127.0.0.1") -> list[str]:
    """``mlflow server`` on a SQLite backend in ``store``, artifacts served from ``store/artifacts``."""
    command = [str(binary), "server", "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}"]
    command += ["--artifacts-destination", str(store / "artifacts"), "--host", host, "--port", str(port)]
    return [*command, "--workers", "1"]


@dataclass(frozen=True)
class MLflowServer:
    """A running MLflow tracking server."""

    url: str

    def connection(self, experiment: str | None = None) -> str:
        """``AIRFLOW_CONN_MLFLOW_DEFAULT``: an ``mlflow`` connection to this server."""
        extra = {"experiment_name": experiment} if experiment else {}
        return json.dumps({"conn_type": "mlflow", "host": self.url, "extra": extra})

    def airflow_settings(self) -> dict[str, str]:
        """What Airflow's processes need to record training runs here: the ``mlflow_default`` connection,
        and the MLflow client's telemetry off (nothing leaves the machine)."""
        return {"AIRFLOW_CONN_MLFLOW_DEFAULT": self.connection(), "MLFLOW_DISABLE_TELEMETRY": "true"}


def start_mlflow_server(stack: Stack, port: int, store: Path, env: Mapping[str, str]) -> MLflowServer:
    """The MLflow tracking server on 127.0.0.1:port with its data in ``store``; returns once it answers."""
    binary = mlflow_server_binary()
    if not binary.is_file():
        raise StackError(
            f"no MLflow server at {binary}: `make setup` builds its virtualenv .venv-mlflow "
            "(or set PROJECT_MLFLOW_SERVER to an mlflow executable)"
        )
    store.mkdir(parents=True, exist_ok=True)
    server = MLflowServer(f"http://127.0.0.1:{port}")
    own = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}  # its own virtualenv
    stack.start(
        "mlflow-server", mlflow_server_command(binary, port, store), {**own, **MLFLOW_SERVER_ENVIRONMENT}
    )
    wait_for(
        lambda: answers_http(f"{server.url}/health"),
        timeout=120,
        what=f"the MLflow tracking server at {server.url}",
        interval=0.3,
        stack=stack,
    )
    return server


@dataclass(frozen=True)
class Annotators:
    """Simulated annotator sessions and how often they depart from the reference labels."""

    names: tuple[str, ...] = ("alice", "bob", "carol")
    seed: int = 7
    disagree: float = 0.1
    reject: float = 0.0
    ignore: float = 0.0
    flag: float = 0.0
    reference: Path | None = None
    """Tasks whose labels an annotator starts from on the same input (rework redone)."""

    def arguments(self) -> list[str]:
        rates = {"disagree": self.disagree, "reject": self.reject, "ignore": self.ignore, "flag": self.flag}
        arguments = ["--sessions", ",".join(self.names), "--seed", str(self.seed)]
        for name, rate in rates.items():
            arguments += [f"--{name}", str(rate)]
        return arguments + (["--reference", str(self.reference)] if self.reference else [])


DEMO_ANNOTATORS = (Annotators(("alice", "bob"), disagree=0.0), Annotators(("carol",), disagree=0.3))
"""alice and bob follow the guidelines; carol departs from them on about a third of the tasks: the
escalation story settles the disputes she raises, QA finds her errors, and she reworks them."""


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

    def serve(
        self,
        stack: Stack,
        dataset: str,
        source: Path,
        port: int,
        env: Mapping[str, str],
        options: Sequence[str] = (),
    ) -> str:
        """``python -m sandbox.prodigy serve`` with feed overlap (every annotator sees every task) and any
        further ``options`` (``--route-by-meta annotator``)."""
        url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "sandbox.prodigy", "serve", dataset, "--source", str(source)]
        command += ["--host", "127.0.0.1", "--port", str(port), "--feed-overlap", *options]
        stack.start(f"prodigy-sandbox-{dataset}", command, {**env, "PRODIGY_HOME": str(self.home)})
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

    def annotated_batch(
        self,
        stack: Stack,
        dataset: str,
        meta: Mapping[str, Any],
        source: Path,
        port: int,
        env: Mapping[str, str],
        annotators: Sequence[Annotators],
    ) -> AnnotatedBatch:
        """A dataset created with ``meta``, served from ``source`` and fully annotated by each team."""
        self.write_config()
        self.update_dataset(dataset, meta, create=True)
        url = self.serve(stack, dataset, source, port, env)
        summaries = [self.annotate(stack, url, dataset, team, env) for team in annotators]
        return AnnotatedBatch(url, "; ".join(summaries))

    def dataset_meta(self, dataset: str) -> dict[str, Any] | None:
        """The dataset's meta, or None while it does not exist."""
        with connection_variables({"AIRFLOW_CONN_PRODIGY_DEFAULT": self.connection()}):
            from prodigy_opentext.exceptions import DatasetNotFoundError
            from prodigy_opentext.hooks.prodigy import ProdigyHook

            try:
                return ProdigyHook().get_meta(dataset)
            except DatasetNotFoundError:
                return None


class AnnotatedBatch(NamedTuple):
    """A served, annotated dataset: the Prodigy server and the annotators' closing line."""

    url: str
    annotators_summary: str


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
        for (section, key), value in project_settings(self.home, self.data_dir).items():
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
        if not self.sql_alchemy_conn.startswith("sqlite"):
            for key in SQLITE_ONLY_KEYS:
                env.pop(f"AIRFLOW__DATABASE__{key.upper()}")
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
