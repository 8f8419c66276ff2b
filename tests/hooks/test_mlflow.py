"""MLflowTrackingHook against a real MLflow tracking server (``mlflow server`` on SQLite) over HTTP.

What the hook wrote is read back through MLflow's REST API, not through the client the hook uses.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from airflow.sdk.exceptions import AirflowFailException

from prodigy_opentext.failures import ConnectionMissing
from prodigy_opentext.hooks.mlflow import DIGEST_LENGTH, MLflowTrackingHook
from tests.fixtures.mlflow_server import MLflowRest, dataset_inputs, run_tags

SHA256 = hashlib.sha256(b"a manifest").hexdigest()
SOURCE = "file:///data/releases/brands/b12"


def connect(monkeypatch: pytest.MonkeyPatch, conn: dict[str, Any], conn_id: str = "mlflow_default"):
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "mlflow", **conn}))
    return MLflowTrackingHook(conn_id)


@pytest.fixture
def experiment() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def hook(mlflow_server: MLflowRest, experiment: str, monkeypatch) -> MLflowTrackingHook:
    return connect(monkeypatch, {"host": mlflow_server.url, "extra": {"experiment_name": experiment}})


def log_release(hook: MLflowTrackingHook, consumer: str = "trainer", **options: Any) -> dict[str, Any]:
    identity = {"release.idempotency_key": f"brands:b12:{SHA256}", "release.consumer": consumer}
    return dict(
        hook.log_dataset_input(
            identity,
            name="brands@b12",
            sha256=SHA256,
            source_uri=SOURCE,
            run_name=f"{consumer} brands@b12",
            profile={"examples": 12},
            tags={"release.version": "b12"},
            **options,
        )
    )


def test_a_dataset_is_logged_as_an_input_of_one_run_however_often_it_is_logged(
    hook, mlflow_server: MLflowRest, experiment: str
) -> None:
    first = log_release(hook)
    assert log_release(hook) == first, "a rerun finds the run it made"

    runs = mlflow_server.runs(experiment, f"tags.`release.idempotency_key` = 'brands:b12:{SHA256}'")
    assert [run["info"]["run_id"] for run in runs] == [first["run_id"]]
    run = mlflow_server.run(first["run_id"])
    assert run["info"]["status"] == "FINISHED"
    assert run["info"]["experiment_id"] == first["experiment_id"]
    assert (
        first["run_url"]
        == f"{mlflow_server.url}/#/experiments/{first['experiment_id']}/runs/{first['run_id']}"
    )
    (logged,) = dataset_inputs(run)
    assert logged["name"] == "brands@b12"
    assert logged["digest"] == SHA256[:DIGEST_LENGTH] and DIGEST_LENGTH == 36
    assert (logged["source_type"], logged["source"]) == ("local", {"uri": SOURCE})
    assert logged["context"] == "training"
    assert logged["profile"] == {"sha256": SHA256, "examples": 12}
    tags = run_tags(run)
    assert tags["release.version"] == "b12" and tags["release.consumer"] == "trainer"

    other = log_release(hook, consumer="evaluator")
    assert other["run_id"] != first["run_id"], "another consumer's training is another run"
    assert len(mlflow_server.runs(experiment)) == 2


def test_a_run_interrupted_before_its_input_gets_it_on_the_rerun(
    hook, mlflow_server: MLflowRest, experiment: str
) -> None:
    """Before the first call logged its input the task died: the rerun logs it on the same run."""
    with hook.connected() as client:
        experiment_id = hook.experiment_id(client)
        tags = {"release.idempotency_key": f"brands:b12:{SHA256}", "release.consumer": "trainer"}
        started = client.create_run(experiment_id, tags=tags).info.run_id
    assert log_release(hook)["run_id"] == started
    run = mlflow_server.run(started)
    assert [i["digest"] for i in dataset_inputs(run)] == [SHA256[:DIGEST_LENGTH]]
    assert run["info"]["status"] == "FINISHED"


class BasicAuthProxy:
    """A reverse proxy that lets only the right basic-auth credentials through to the MLflow server, as
    teams put one in front of MLflow; it notes the Authorization header of every request."""

    def __init__(self, upstream: str, user: str, password: str) -> None:
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.seen: list[str | None] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def forward(self) -> None:
                auth = self.headers.get("Authorization")
                proxy.seen.append(auth)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if auth != expected:
                    status, content = (
                        401,
                        b'{"error_code": "UNAUTHENTICATED", "message": "credentials refused"}',
                    )
                else:
                    headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
                    answer = requests.request(
                        self.command, upstream + self.path, data=body, headers=headers, timeout=30
                    )
                    status, content = answer.status_code, answer.content
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PATCH = do_DELETE = forward

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def guarded(mlflow_server: MLflowRest) -> Iterator[BasicAuthProxy]:
    proxy = BasicAuthProxy(mlflow_server.url, "trainer", "s3cret-pass")
    try:
        yield proxy
    finally:
        proxy.server.shutdown()


def test_credentials_come_from_the_connection_only_and_leave_no_trace(
    guarded: BasicAuthProxy, experiment: str, monkeypatch
) -> None:
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "someone-else")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "their-password")
    conn = {"host": guarded.url, "login": "trainer", "extra": {"experiment_name": experiment}}

    assert log_release(connect(monkeypatch, {**conn, "password": "s3cret-pass"}))["run_id"]
    assert set(guarded.seen) == {"Basic " + base64.b64encode(b"trainer:s3cret-pass").decode()}
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == (
        "someone-else",
        "their-password",
    ), "the process's own settings are back after the call"

    with pytest.raises(MlflowException, match="credentials refused") as refused:
        log_release(connect(monkeypatch, {**conn, "password": "wrong-pass"}, "mlflow_wrong"))
    assert "wrong-pass" not in str(refused.value)

    guarded.seen.clear()
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "trainer")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret-pass")
    anonymous = connect(monkeypatch, {"host": guarded.url, "extra": {"experiment_name": experiment}}, "anon")
    with pytest.raises(MlflowException, match="credentials refused"):
        log_release(anonymous)
    assert set(guarded.seen) == {None}, "credentials in the environment are not the connection's"
    assert "s3cret-pass" not in repr(connect(monkeypatch, {**conn, "password": "s3cret-pass"}).settings)


def test_test_connection_says_whether_the_server_answers(hook, monkeypatch) -> None:
    from scripts.processes import free_port

    ok, message = hook.test_connection()
    assert ok, message
    nobody = connect(monkeypatch, {"host": f"http://127.0.0.1:{free_port()}", "extra": {"max_retries": 0}})
    ok, message = nobody.test_connection()
    assert not ok and "127.0.0.1" in message


@pytest.mark.parametrize(
    ("conn", "named"),
    [
        ({}, "host must be the tracking server's URL"),
        ({"host": "ftp://mlflow"}, "is not an http:// or https:// URL"),
        ({"host": "http://mlflow:5000", "password": "x"}, "a password needs its login"),
        ({"host": "mlflow", "login": "u", "extra": {"token": "t"}}, "not both"),
        ({"host": "mlflow", "extra": {"timeout": "soon"}}, "extra 'timeout' must be a whole number"),
        ({"host": "mlflow", "extra": {"experiment_name": " "}}, "extra 'experiment_name'"),
        ({"host": "mlflow", "extra": {"ui_url": "mailto:x"}}, "extra 'ui_url'"),
    ],
)
def test_a_bad_connection_is_refused_naming_its_field(conn, named, monkeypatch) -> None:
    with pytest.raises(ValueError, match=named):
        _ = connect(monkeypatch, conn).settings


def test_settings_read_host_port_and_ui_url(monkeypatch) -> None:
    settings = connect(
        monkeypatch, {"host": "mlflow", "port": 5000, "extra": {"ui_url": "http://localhost:8093/"}}
    ).settings
    assert (settings.tracking_uri, settings.ui_url) == ("http://mlflow:5000", "http://localhost:8093")
    assert settings.experiment == "annotation-releases"


def test_a_missing_connection_fails_without_retries_saying_how_to_add_it() -> None:
    with pytest.raises(ConnectionMissing, match="AIRFLOW_CONN_MLFLOW_NOWHERE") as missing:
        _ = MLflowTrackingHook("mlflow_nowhere").settings
    assert isinstance(missing.value, AirflowFailException)
    assert "--conn-type mlflow" in str(missing.value)
