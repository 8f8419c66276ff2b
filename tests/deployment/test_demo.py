"""``make demo`` tells its whole story and leaves nothing running.

The demo runs as a user runs it (``python -m scripts.demo``) with ``DEMO_ONCE=1``, its data folder and
AIRFLOW_HOME in tmp and free ports, so it does not touch a developer's demo. What it read from Airflow's
REST API before shutting down comes back in its ``DEMO_SUMMARY`` line; what MLflow recorded is read from
MLflow's REST API afterwards, from a tracking server started again on the demo's MLflow store; its
OpenLineage events from the file in its data folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prodigy_opentext.hooks.mlflow import DEFAULT_EXPERIMENT, DIGEST_LENGTH
from prodigy_opentext.lineage import APPROVALS_FACET
from scripts.configure_airflow_home import LINEAGE_EVENTS
from scripts.launchers import start_mlflow_server
from scripts.processes import STACK_MARKER, Stack, free_port, processes_with_env
from scripts.stories import DAG_IDS
from scripts.stories.batch_approval import SME_REVIEWER
from scripts.stories.release import RELEASE_MANAGER
from tests.fixtures.mlflow_server import MLflowRest, dataset_inputs

REPO = Path(__file__).resolve().parents[2]
DEMO_TIMEOUT_SECONDS = 1500

pytestmark = pytest.mark.slow


@pytest.fixture
def demo_run(tmp_path: Path) -> tuple[subprocess.CompletedProcess, dict]:
    data_dir, home = tmp_path / "demo-data", tmp_path / "airflow-home"
    home.mkdir()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "PRODIGY_"))
    }
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "AIRFLOW_HOME": str(home),
            "DEMO_DATA_DIR": str(data_dir),
            "DEMO_AIRFLOW_PORT": str(free_port()),
            "DEMO_OPENTEXT_PORT": str(free_port()),
            "DEMO_PRODIGY_PORT": str(free_port()),
            "DEMO_MLFLOW_PORT": str(free_port()),
            "DEMO_REVIEW_PAUSE_SECONDS": "0",
            "DEMO_ONCE": "1",
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", "scripts.demo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_SECONDS,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("DEMO_SUMMARY ")]
    assert lines, (
        f"no DEMO_SUMMARY line; exit {result.returncode}\n{result.stdout[-5000:]}\n{result.stderr[-3000:]}"
    )
    return result, json.loads(lines[-1].removeprefix("DEMO_SUMMARY "))


def test_demo_runs_the_story_to_a_consumed_release_and_stops_everything(demo_run, tmp_path: Path):
    result, summary = demo_run
    assert result.returncode == 0, result.stdout[-5000:]
    assert summary["status"] == "success"

    assert {dag_id: run["state"] for dag_id, run in summary["runs"].items()} == dict.fromkeys(
        DAG_IDS, "success"
    )
    assert [a["reviewer"] for a in summary["approvals"]] == [SME_REVIEWER, RELEASE_MANAGER]
    regulated = summary["regulated"]
    assert (regulated["sessions"], regulated["stranger_status"]) == (["alice"], 403), regulated
    assert regulated["held_tasks"] == 4 and regulated["review_run"], regulated

    release = summary["release"]
    assert Path(release["path"]).is_relative_to(summary["data_dir"])
    manifest = json.loads(Path(release["manifest"]).read_text())
    assert {a["kind"] for a in manifest["approvals"]} == {"batch_approval", "release_signoff"}
    assert [consumed["path"] for consumed in summary["consumed"]] == [release["path"]]
    # Both approvals' processes called Airflow back when decided, and the api-server's plugin took the calls.
    called_back = {call["processInstanceId"]: call for call in summary["callbacks"]}
    for approval in manifest["approvals"]:
        call = called_back[approval["process_instance_id"]]
        assert (call["status"], call["error"]) == (202, None), call
    for dag_id, run in summary["runs"].items():
        assert f"/dags/{dag_id}/runs/" in run["url"]
        assert run["url"] in result.stdout

    assert processes_with_env(STACK_MARKER, summary["stack_id"]) == []

    training = summary["training_run"]
    assert training["run_url"] in result.stdout, "the summary shows the MLflow run that used the release"
    sha256 = hashlib.sha256(Path(release["manifest"]).read_bytes()).hexdigest()
    with Stack(tmp_path / "mlflow-logs") as stack:
        store = Path(summary["data_dir"]) / "mlflow"
        mlflow = MLflowRest(start_mlflow_server(stack, free_port(), store, dict(os.environ)).url)
        runs = mlflow.runs(DEFAULT_EXPERIMENT, f"tags.`release.manifest_sha256` = '{sha256}'")
    assert [run["info"]["run_id"] for run in runs] == [training["run_id"]]
    (logged,) = dataset_inputs(runs[0])
    assert logged["digest"] == sha256[:DIGEST_LENGTH]
    assert logged["source"] == {"uri": Path(release["path"]).resolve().as_uri()}
    assert logged["context"] == "training"

    events = [
        json.loads(line) for line in (Path(summary["data_dir"]) / LINEAGE_EVENTS).read_text().splitlines()
    ]
    manifest_name = str(Path(release["manifest"]).resolve())
    (publish,) = [
        e
        for e in events
        if e["eventType"] == "COMPLETE"
        and e["job"]["name"] == "dataset_release.publish"
        and manifest_name in {output["name"] for output in e["outputs"]}
    ]
    approvers = [a["approver"] for a in publish["run"]["facets"][APPROVALS_FACET]["approvals"]]
    assert sorted(approvers) == sorted([SME_REVIEWER, RELEASE_MANAGER])
