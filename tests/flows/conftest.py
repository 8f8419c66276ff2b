"""What the flow tests share: the project's DAGs against both sandboxes, annotated datasets, a reviewer.

The DAGs run by ``dag.test()``; simulated annotators answer through the Prodigy sandbox's HTTP API; a
reviewer thread decides in the OpenText sandbox once the approval task exists. Nothing of the flows is
stubbed.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.flows.support import ANNOTATORS, DAGS, DEMO_TASKS


@pytest.fixture(autouse=True)
def audit_heads(airflow_db) -> Iterator[None]:
    """The flows anchor each audit entry in an Airflow Variable, so they need the metadata database even
    outside a DAG run; the heads of the test's logs are forgotten after it."""
    yield
    from airflow.models import Variable

    from prodigy_opentext.audit import AUDIT_HEAD_VARIABLE

    Variable.delete(AUDIT_HEAD_VARIABLE)


@pytest.fixture
def flows(airflow_db, opentext_sandbox_session, prodigy_home, tmp_path, monkeypatch):
    """Both sandboxes as the DAGs' connections, and the project's DAGs serialized for ``dag.test()``."""
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    sandbox = opentext_sandbox_session
    monkeypatch.setenv("PROJECT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv(
        "AIRFLOW_CONN_OPENTEXT_DEFAULT",
        json.dumps(
            {
                "conn_type": "opentext_workflow",
                "host": sandbox.url,
                "login": sandbox.client_id,
                "password": sandbox.client_secret,
                "extra": {"tenant_id": sandbox.tenant},
            }
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_PRODIGY_DEFAULT",
        json.dumps(
            {
                "conn_type": "prodigy",
                "extra": {
                    "db": "sqlite",
                    "db_settings": {"sqlite": {"name": "prodigy.db", "path": str(prodigy_home)}},
                },
            }
        ),
    )
    bag = BundleDagBag(dag_folder=str(DAGS), bundle_path=DAGS)
    assert not bag.import_errors
    sync_bag_to_db(bag, "dags-folder", None)
    return {"dags": bag.dags, "sandbox": sandbox, "data": tmp_path / "data"}


@pytest.fixture
def annotated_dataset(prodigy_server, run_prodigy, tmp_path) -> Callable[..., str]:
    """``annotated_dataset(**behaviour)``: a new dataset answered by two simulated annotators, ready."""
    from prodigy_opentext.hooks.prodigy import ProdigyHook

    def make(tasks: int = 12, **behaviour: float) -> str:
        name = f"brands_{uuid.uuid4().hex[:8]}"
        source = tmp_path / f"{name}.jsonl"
        source.write_text("".join(DEMO_TASKS.read_text().splitlines(keepends=True)[:tasks]))
        url = prodigy_server(name, source, feed_overlap=True)
        rates = {"disagree": 0, "reject": 0, "ignore": 0, "flag": 0, **behaviour}
        run_prodigy(
            "annotate", "--url", url, "--dataset", name, "--sessions", ",".join(ANNOTATORS), "--seed", "7",
            *[arg for key, value in rates.items() for arg in (f"--{key}", str(value))],
        )  # fmt: skip
        hook = ProdigyHook()
        meta = {"labels": ["BRAND"], "annotator_emails": ANNOTATORS, "review": {"status": "ready"}}
        hook.set_meta(name, meta)
        return name

    return make


class MlopsEndpoint:
    """A local HTTP endpoint standing in for an MLOps platform: records each hand-off it is sent."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.statuses: list[int] = []  # answers to give, in order; 200 once they are used up
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = endpoint.statuses.pop(0) if endpoint.statuses else 200
                endpoint.received.append(
                    {"status": status, "headers": dict(self.headers), "json": json.loads(body)}
                )
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b'{"accepted": true}')

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def mlops_endpoint(monkeypatch) -> Iterator[MlopsEndpoint]:
    """The ``mlops_handoff`` connection pointing at a local endpoint that records what it receives."""
    endpoint = MlopsEndpoint()
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLOPS_HANDOFF",
        json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": endpoint.port, "schema": "http"}),
    )
    try:
        yield endpoint
    finally:
        endpoint.server.shutdown()


@pytest.fixture
def opentext(opentext_sandbox_session, monkeypatch):
    """The shared OpenText sandbox as ``opentext_default``, and a hook on it."""
    from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook
    from tests.hooks.test_opentext_contract import connection_json

    monkeypatch.setenv("AIRFLOW_CONN_OPENTEXT_DEFAULT", connection_json(opentext_sandbox_session))
    return OpenTextWorkflowHook()
