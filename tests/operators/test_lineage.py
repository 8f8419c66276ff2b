"""OpenLineage of the export, validation and release operators: the events Airflow's OpenLineage listener
writes with the file transport during real DAG runs (``dag.test()``), and the facets built on their own.

A release run goes through batch approval and the release sign-off in the OpenText sandbox, as
``tests/flows/test_release.py`` runs it; the events file is then read as a lineage backend would.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from prodigy_opentext._prodigy.database import DatabaseTarget
from prodigy_opentext.lineage import (
    AGREEMENT_FACET,
    APPROVALS_FACET,
    VALIDATION_FACET,
    prodigy_namespace,
    release_lineage,
    validation_lineage,
)
from tests.fixtures.airflow_db import task_states
from tests.flows.conftest import annotated_dataset, audit_heads, flows  # noqa: F401 (fixtures)
from tests.flows.support import RELEASE_MANAGER, SME, released
from tests.hooks import prodigy_support
from tests.hooks.prodigy_support import execute_sql, sample_rows

prodigy_sqlite_conn = prodigy_support.prodigy_sqlite_conn


@pytest.fixture(scope="module")
def lineage_events(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The file OpenLineage's file transport appends this module's events to (tests tell theirs apart by
    run id).

    Airflow registers the OpenLineage listener when it first loads plugins, only if OpenLineage is on then;
    the suite runs with it off (tests/conftest.py), so the listener is added here (under pytest the provider
    reads its settings on every call).
    """
    from airflow.providers.openlineage.plugins.listener import get_openlineage_listener
    from airflow.sdk.listener import get_listener_manager

    events = tmp_path_factory.mktemp("lineage") / "openlineage-events.jsonl"
    settings = {
        "AIRFLOW__OPENLINEAGE__DISABLED": "False",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "prodigy-opentext-tests",
    }
    manager, listener = get_listener_manager(), get_openlineage_listener()
    added = not manager.pm.is_registered(listener)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings.items():
            patch.setenv(name, value)
        manager.add_listener(listener)
        try:
            yield events
        finally:
            if added:
                manager.pm.unregister(listener)


def completed(events: Path, run_id: str) -> dict[str, dict[str, Any]]:
    """The COMPLETE events of one DAG run's tasks, by task id."""
    found = {}
    for line in events.read_text().splitlines():
        event = json.loads(line)
        airflow = event["run"]["facets"].get("airflow")
        if event["eventType"] == "COMPLETE" and airflow and airflow["dagRun"]["run_id"] == run_id:
            found[airflow["task"]["task_id"]] = event
    return found


def names(datasets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(dataset["namespace"], dataset["name"]) for dataset in datasets]


@pytest.mark.slow
def test_a_release_run_reports_its_inputs_outputs_approvals_validation_and_agreement(
    flows,  # noqa: F811
    annotated_dataset,  # noqa: F811
    lineage_events: Path,
    prodigy_home: Path,
) -> None:
    sandbox, dags, data = flows["sandbox"], flows["dags"], flows["data"]
    dataset = annotated_dataset()
    version, run = released(sandbox, dags, dataset)
    folder = data / "releases" / dataset / version
    manifest = json.loads((folder / "manifest.json").read_text())

    events = completed(lineage_events, run.run_id)
    assert {"stage_data", "validate", "publish", "announce"} <= set(events), sorted(events)
    publish, validate = events["publish"], events["validate"]
    assert publish["job"] == {**publish["job"], "namespace": "prodigy-opentext-tests"}
    assert publish["job"]["name"] == "dataset_release.publish"

    prodigy_version = (f"prodigy://{prodigy_home / 'prodigy.db'}", f"{dataset}@{version}")
    staged_files = names(validate["inputs"])
    assert names(publish["inputs"]) == [prodigy_version, *staged_files]
    assert publish["inputs"][0]["facets"]["version"]["datasetVersion"] == version
    assert sorted(names(publish["outputs"])) == sorted(("file", str(path)) for path in folder.iterdir())
    outputs = {Path(output["name"]).name: output for output in publish["outputs"]}
    for name, entry in manifest["files"].items():
        assert outputs[name]["facets"]["version"]["datasetVersion"] == entry["sha256"]
        assert outputs[name]["outputFacets"]["outputStatistics"]["size"] == entry["bytes"]
    annotations = outputs["annotations.jsonl"]["outputFacets"]["outputStatistics"]
    assert annotations["rowCount"] == manifest["counts"]["examples"]
    manifest_sha256 = hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()
    assert outputs["manifest.json"]["facets"]["version"]["datasetVersion"] == manifest_sha256

    facets = publish["run"]["facets"]
    approvals = {a["kind"]: a for a in facets[APPROVALS_FACET]["approvals"]}
    assert (approvals["batch_approval"]["approver"], approvals["release_signoff"]["approver"]) == (
        SME,
        RELEASE_MANAGER,
    )
    for recorded in manifest["approvals"]:
        reported = approvals[recorded["kind"]]
        assert (reported["processInstanceId"], reported["decidedAt"], reported["outcome"]) == (
            recorded["process_instance_id"],
            recorded["decided_at"],
            recorded["outcome"],
        )
    assert facets[VALIDATION_FACET]["success"] is manifest["validation"]["success"] is True
    assert facets[VALIDATION_FACET]["statistics"] == manifest["validation"]["statistics"]
    agreement = facets[AGREEMENT_FACET]
    assert (agreement.get("method"), agreement.get("value"), agreement["nItems"]) == (
        manifest["agreement"]["method"],
        manifest["agreement"]["value"],
        manifest["agreement"]["n_items"],
    )

    checked = sum(len(i["inputFacets"]["dataQualityAssertions"]["assertions"]) for i in validate["inputs"])
    assert checked == manifest["validation"]["statistics"]["evaluated"]
    assert validate["run"]["facets"][VALIDATION_FACET]["statistics"] == manifest["validation"]["statistics"]


def test_an_export_run_reports_the_dataset_version_read_and_the_file_written(
    prodigy_sqlite_conn: Path, run_dag, lineage_events: Path, tmp_path: Path
) -> None:
    from airflow.sdk import DAG

    from prodigy_opentext.hooks.prodigy import ProdigyHook
    from prodigy_opentext.operators.prodigy import ProdigyExportOperator

    rows = [dict(row, answer="accept") for row in sample_rows("textcat_docs_issues", 5)]
    ProdigyHook().add_examples("issues", rows)
    damaged = max(example_id for example_id, _ in ProdigyHook().iter_rows("issues"))
    execute_sql(prodigy_sqlite_conn, "UPDATE example SET content = ? WHERE id = ?", (b"not json", damaged))
    last_id = ProdigyHook().last_example_id("issues")
    output = tmp_path / "out" / "issues.parquet"
    with DAG(f"lineage_{uuid.uuid4().hex[:8]}", schedule=None, start_date=datetime(2025, 1, 1)) as dag:
        ProdigyExportOperator(
            task_id="export",
            dataset="issues",
            output_path=str(output),
            output_format="parquet",
            max_quarantined_fraction=0.5,
        )
    run = run_dag(dag)
    assert run.state == "success", task_states(run)

    event = completed(lineage_events, run.run_id)["export"]
    assert names(event["inputs"]) == [
        (f"prodigy://{prodigy_sqlite_conn / 'prodigy.db'}", f"issues@b{last_id}")
    ]
    data, quarantine = event["outputs"]
    manifest = json.loads(Path(f"{output}.manifest.json").read_text())
    assert (data["name"], data["facets"]["version"]["datasetVersion"]) == (str(output), manifest["sha256"])
    assert data["outputFacets"]["outputStatistics"] == {
        **data["outputFacets"]["outputStatistics"],
        "rowCount": 4,
    }
    columns = {field["name"] for field in data["facets"]["schema"]["fields"]}
    assert {"answer", "content"} <= columns
    assert quarantine["name"] == manifest["quarantine_path"]
    assert quarantine["outputFacets"]["outputStatistics"]["rowCount"] == 1


# Facets built on their own.


def test_a_prodigy_namespace_names_the_database_without_credentials() -> None:
    server = sa.URL.create(
        "postgresql+psycopg2", username="u", password="s3cret", host="db", port=5432, database="p"
    )
    assert prodigy_namespace(DatabaseTarget(server, "PostgreSQL")) == "prodigy://db:5432/p"
    sqlite = Path("/srv/prodigy/prodigy.db")
    assert prodigy_namespace(DatabaseTarget(sa.URL.create("sqlite", database=str(sqlite)), "", sqlite)) == (
        "prodigy:///srv/prodigy/prodigy.db"
    )


SUMMARY = {
    "success": False,
    "parameters": {"min_examples_per_label": 1},
    "rows": {"examples": 2, "disputes": 1},
    "statistics": {"evaluated": 2, "successful": 1, "failed": 1},
    "expectations": [
        {
            "frame": "disputes",
            "rule": "no_open_disputes",
            "expectation": "expect_column_values_to_be_in_set",
            "column": "resolved",
            "success": False,
            "unexpected_count": 1,
            "observed_value": None,
            "samples": ["item 7 is disputed: 'Acme shoes'"],
            "sample_rows": [{"input_hash": 7}],
        },
        {
            "frame": "labels",
            "rule": "labels_in_scheme",
            "expectation": "expect_column_values_to_be_in_set",
            "column": "label",
            "success": True,
            "observed_value": {"a": "list"},
            "samples": [],
            "sample_rows": [],
        },
    ],
}


def test_a_validation_reports_each_files_rules_and_no_sample_content(tmp_path: Path) -> None:
    from openlineage.client.serde import Serde

    lineage = validation_lineage(tmp_path / "annotations.jsonl", tmp_path / "disputes.jsonl", SUMMARY)
    by_file = {
        Path(i.name).name: [(a.name, a.success) for a in i.inputFacets["dataQualityAssertions"].assertions]
        for i in lineage.inputs
    }
    assert by_file == {
        "annotations.jsonl": [("labels_in_scheme", True)],
        "disputes.jsonl": [("no_open_disputes", False)],
    }
    facet = json.loads(Serde.to_json(lineage.run_facets[VALIDATION_FACET]))
    assert (facet["success"], facet["statistics"]["failed"]) == (False, 1)
    assert "Acme" not in json.dumps(facet) and "sample" not in json.dumps(facet)
    assert [e.get("observedValue") for e in facet["expectations"]] == [None, None], "only scalars"

    unvalidated = validation_lineage(tmp_path / "annotations.jsonl", None, None)
    assert [Path(i.name).name for i in unvalidated.inputs] == ["annotations.jsonl"]
    assert unvalidated.run_facets == {}


def test_a_release_that_was_not_written_names_only_its_inputs(tmp_path: Path) -> None:
    target = DatabaseTarget(sa.URL.create("sqlite", database="/p/prodigy.db"), "", Path("/p/prodigy.db"))
    staged = {"dataset": "brands", "version": "b12", "annotations": str(tmp_path / "a.jsonl"), "disputes": ""}
    lineage = release_lineage(target, staged, None)
    assert [(i.namespace, i.name) for i in lineage.inputs] == [
        ("prodigy:///p/prodigy.db", "brands@b12"),
        ("file", str(tmp_path / "a.jsonl")),
    ]
    assert (lineage.outputs, lineage.run_facets) == ([], {})
