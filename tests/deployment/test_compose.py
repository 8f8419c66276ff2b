"""docker-compose.yaml and the Dockerfile stay consistent with the repository the tests run.

No Docker engine runs in CI, so the file is checked against what it refers to: the pinned Airflow version,
the folders it mounts, the sandbox commands and their flags, the connection types of the provider.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}
SANDBOX_PORTS = {"opentext-sandbox": 8091, "prodigy-sandbox": 8092}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


def pinned_airflow_version() -> str:
    match = re.search(r"^apache-airflow==(\S+)$", (REPO / "requirements.in").read_text(), re.M)
    assert match, "requirements.in does not pin apache-airflow"
    return match.group(1)


def test_image_is_built_on_the_pinned_airflow_version(compose):
    dockerfile = (REPO / "Dockerfile").read_text()
    version = pinned_airflow_version()
    assert f"ARG AIRFLOW_VERSION={version}\n" in dockerfile
    assert re.search(r"^FROM apache/airflow:\$\{AIRFLOW_VERSION\}-python3\.11$", dockerfile, re.M)
    assert re.search(rf":{re.escape(version)}\}}?$", compose["x-airflow-common"]["image"])


def test_official_celery_topology_plus_sandboxes(compose):
    services = set(compose["services"])
    assert services >= AIRFLOW_SERVICES | {"postgres", "redis"} | set(SANDBOX_PORTS)
    env = compose["x-airflow-common"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    commands = {
        name: compose["services"][name].get("command") for name in AIRFLOW_SERVICES - {"airflow-init"}
    }
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
        "airflow-worker": "celery worker",
    }


def test_ports(compose):
    assert "8080:8080" in compose["services"]["airflow-apiserver"]["ports"]
    for name, port in SANDBOX_PORTS.items():
        assert f"{port}:{port}" in compose["services"][name]["ports"]
        assert str(port) in compose["services"][name]["command"]


def test_mounted_files_exist_in_the_repo(compose):
    mounts = list(compose["x-airflow-common"]["volumes"]) + list(compose["services"]["postgres"]["volumes"])
    local = [m.split(":")[0] for m in mounts if m.startswith("./")]
    assert {"./dags", "./plugins", "./include"} <= set(local)
    missing = [m for m in local if not (REPO / m).exists()]
    assert not missing


def test_files_the_containers_read_exist(compose):
    for name in SANDBOX_PORTS:
        for arg in compose["services"][name]["command"]:
            if arg.startswith("/opt/airflow/include/"):
                assert (REPO / "include" / arg.removeprefix("/opt/airflow/include/")).is_file(), arg


def test_connections_use_the_provider_connection_types(compose):
    from prodigy_opentext import get_provider_info

    declared = {c["connection-type"] for c in get_provider_info()["connection-types"]}
    env = compose["x-airflow-common"]["environment"]
    for var in (
        "AIRFLOW_CONN_PRODIGY_DEFAULT",
        "AIRFLOW_CONN_OPENTEXT_DEFAULT",
        "AIRFLOW_CONN_MLFLOW_DEFAULT",
    ):
        default = re.fullmatch(r"\$\{" + var + r":-(.*)\}", env[var], re.S).group(1)
        assert json.loads(default)["conn_type"] in declared


@pytest.mark.parametrize("service", sorted(SANDBOX_PORTS))
def test_sandbox_commands_exist_and_accept_their_flags(compose, service):
    spec = compose["services"][service]
    module = spec["entrypoint"][-1]
    command = list(spec["command"])
    subcommand = [command[0]] if not command[0].startswith("-") else []
    result = subprocess.run(
        [sys.executable, "-m", module, *subcommand, "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    flags = {arg for arg in command if arg.startswith("--")}
    assert {flag for flag in flags if flag not in result.stdout} == set()


def test_secrets_have_no_default_anyone_could_read(compose):
    """Before: the JWT secret defaulted to a phrase in this public file and the Fernet key to nothing."""
    env = compose["x-airflow-common"]["environment"]
    for name, var in (
        ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW_FERNET_KEY"),
        ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW_JWT_SECRET"),
    ):
        assert re.fullmatch(r"\$\{" + var + r":\?[^}]*scripts\.compose_env[^}]*\}", env[name]), env[name]


def test_the_sandbox_calls_the_api_server_back_with_the_token_airflow_checks(compose):
    """The models' HttpTask reaches the plugin in the api-server, with the token of opentext_callback."""
    from prodigy_opentext.decision_callbacks import CALLBACK_CONN_ID, URL_PREFIX
    from sandbox.opentext.server import CONFIG_VARIABLE

    token = r"\$\{OPENTEXT_CALLBACK_TOKEN:\?[^}]*scripts\.compose_env[^}]*\}"
    connection = compose["x-airflow-common"]["environment"][f"AIRFLOW_CONN_{CALLBACK_CONN_ID.upper()}"]
    assert re.fullmatch(r'\{"conn_type":"generic","password":"' + token + r'"\}', connection), connection
    configuration = compose["services"]["opentext-sandbox"]["environment"][CONFIG_VARIABLE]
    url = configuration.split('"airflow_callback_url":"')[1].split('"')[0]
    assert url == f"http://airflow-apiserver:8080{URL_PREFIX}/decisions"
    assert (
        "airflow-apiserver" in compose["services"]
        and "8080:8080" in compose["services"]["airflow-apiserver"]["ports"]
    )
    assert re.search(r'"airflow_callback_token":"' + token + '"', configuration), configuration


def test_the_secrets_script_writes_usable_secrets_once(tmp_path):
    from cryptography.fernet import Fernet

    from scripts.compose_env import ensure_secrets

    env_file = tmp_path / ".env"
    env_file.write_text("AIRFLOW_UID=1000\n")
    assert ensure_secrets(env_file) == ["AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "OPENTEXT_CALLBACK_TOKEN"]
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    Fernet(values["AIRFLOW_FERNET_KEY"].encode())  # a valid key, or this raises
    assert len(values["AIRFLOW_JWT_SECRET"]) >= 48 and values["AIRFLOW_UID"] == "1000"
    assert len(values["OPENTEXT_CALLBACK_TOKEN"]) >= 32
    assert env_file.stat().st_mode & 0o077 == 0, "readable by its owner only"
    assert (
        ensure_secrets(env_file) == []
        and dict(line.split("=", 1) for line in env_file.read_text().splitlines()) == values
    ), "a second run keeps the secrets"


def test_the_sandboxes_start_after_airflow_init_owns_the_data_volume(compose):
    for name in SANDBOX_PORTS:
        depends = compose["services"][name]["depends_on"]
        assert depends.get("airflow-init") == {"condition": "service_completed_successfully"}, name


def test_only_airflow_mounts_the_holding_area_of_regulated_content(compose):
    holding = compose["x-airflow-common"]["environment"]["REGULATED_HOLDING_DIR"]
    mounted_at = {m.split(":")[1]: m for m in compose["x-airflow-common"]["volumes"]}
    assert holding in mounted_at, "Airflow's containers read the holding area"
    prodigy = [m.split(":")[1] for m in compose["services"]["prodigy-sandbox"]["volumes"]]
    assert not [m for m in prodigy if holding.startswith(m) or m.startswith(holding)], prodigy
    others = set(mounted_at) - {holding}
    assert others <= set(prodigy), "the Prodigy container mounts everything else Airflow does"


def pinned(requirements: str, name: str) -> str:
    match = re.search(rf"^{re.escape(name)}==(\S+)$", (REPO / requirements).read_text(), re.M)
    assert match, f"{requirements} does not pin {name}"
    return match.group(1)


def test_mlflow_runs_the_tested_version_as_the_tests_run_it(compose):
    """The tracking server of the compose file is the one the tests and the demo start: the version of
    requirements-mlflow.in (the client's too), the same flags, SQLite and artifacts on its own volume."""
    from scripts.launchers import MLFLOW_SERVER_ENVIRONMENT, mlflow_server_command

    version = pinned("requirements-mlflow.in", "mlflow")
    assert pinned("requirements.in", "mlflow-skinny") == version, "client and server versions differ"
    spec = compose["services"]["mlflow"]
    assert spec["image"] == f"ghcr.io/mlflow/mlflow:v{version}"
    command = list(spec["command"])
    assert command[:2] == ["mlflow", "server"]
    options = dict(zip(command[2::2], command[3::2], strict=True))
    tested = mlflow_server_command(Path("mlflow"), 5000, Path("/store"))
    assert set(options) - {"--allowed-hosts"} == set(tested[2::2]), "the flags the tests run with"
    assert options["--workers"] == "1"
    store = options["--backend-store-uri"].removeprefix("sqlite:///")
    assert options["--backend-store-uri"].startswith("sqlite:////"), "SQLite at an absolute path"
    volumes = {m.split(":")[1]: m.split(":")[0] for m in spec["volumes"]}
    for path in (store, options["--artifacts-destination"]):
        mounted = [target for target in volumes if path.startswith(target + "/")]
        assert mounted and volumes[mounted[0]] in compose["volumes"], f"{path} is not on a named volume"
    assert {k: spec["environment"][k] for k in MLFLOW_SERVER_ENVIRONMENT} == MLFLOW_SERVER_ENVIRONMENT

    env = compose["x-airflow-common"]["environment"]
    default = re.fullmatch(
        r"\$\{AIRFLOW_CONN_MLFLOW_DEFAULT:-(.*)\}", env["AIRFLOW_CONN_MLFLOW_DEFAULT"], re.S
    )
    connection = json.loads(default.group(1))
    assert connection["host"] == f"http://mlflow:{options['--port']}"
    assert f"mlflow:{options['--port']}" in options["--allowed-hosts"].split(","), "MLflow lets Airflow in"
    host_port = next(p.split(":")[0] for p in spec["ports"] if p.endswith(f":{options['--port']}"))
    assert connection["extra"]["ui_url"] == f"http://localhost:{host_port}"
    assert compose["services"]["airflow-worker"]["depends_on"]["mlflow"] == {"condition": "service_healthy"}


def test_the_mlflow_server_accepts_the_compose_flags(compose):
    from scripts.launchers import mlflow_server_binary
    from tests.fixtures.services import unavailable

    binary = mlflow_server_binary()
    if not binary.is_file():
        unavailable(
            "PROJECT_MLFLOW_SERVER", ".venv-mlflow/bin/mlflow, which `make setup` builds", f"no {binary}"
        )
    result = subprocess.run(
        [str(binary), "server", "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    flags = {arg for arg in compose["services"]["mlflow"]["command"] if arg.startswith("--")}
    assert {flag for flag in flags if flag not in result.stdout} == set()
