"""Every DAG file imports cleanly and carries what an operator of the deployment needs to run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import BundleDagBag

    return BundleDagBag(dag_folder=str(DAGS), bundle_path=DAGS)  # as the DAG processor parses the folder


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}, "\n".join(f"{k}: {v}" for k, v in dagbag.import_errors.items())


def test_every_dag_file_defines_a_dag(dagbag):
    files = {p.resolve() for p in DAGS.glob("*.py") if not p.name.startswith("_")}
    assert files, "dags/ holds no DAG files"
    with_dags = {Path(d.fileloc).resolve() for d in dagbag.dags.values()}
    assert files <= with_dags, f"files without a DAG: {sorted(str(f) for f in files - with_dags)}"


def test_every_dag_is_documented_owned_tagged_and_retried(dagbag):
    problems = []
    for dag_id, dag in sorted(dagbag.dags.items()):
        if not (dag.doc_md or "").strip():
            problems.append(f"{dag_id}: no doc_md")
        if not dag.tags:
            problems.append(f"{dag_id}: no tags")
        for task in dag.tasks:
            if not task.owner or task.owner == "airflow":
                problems.append(f"{dag_id}.{task.task_id}: owner is {task.owner!r}, not the owning team")
            if (task.retries or 0) < 1:
                problems.append(f"{dag_id}.{task.task_id}: retries={task.retries}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", ["news_2026", "2024", "1e5", "True", "None"])
def test_a_dataset_name_renders_as_the_string_it_is(dagbag, name):
    """Native rendering turns a rendered ``2024`` into an int; the DAG's templates keep names as strings."""
    dag = dagbag.dags["annotation_batch_approval"]
    wait = dag.get_task("wait_for_batch")
    rendered = wait.render_template(wait.dataset, {"params": {"dataset": name}}, dag.get_template_env())
    assert rendered == name


def test_the_cli_parses_the_dag_files_too(tmp_path):
    """``airflow dags list-import-errors --local`` parses without a DAG bundle: with dags/ on PYTHONPATH, as
    ``make`` and the image set it, the settings module the DAG files import is found."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(DAGS.parent), str(DAGS)])}
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "list-import-errors", "--local", "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [], result.stdout[-2000:]
