"""OpenLineage of the provider's operators: how a Prodigy dataset version and a file are named, and the run
facets a validation and a release carry (approvals, validation, agreement).

Only the operators' ``get_openlineage_facets_on_complete`` import this module, when the OpenLineage
listener asks for their lineage: DAG files never import the OpenLineage client.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from airflow.providers.openlineage.extractors import OperatorLineage
from attrs import define, field
from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.facet_v2 import (
    RunFacet,
    data_quality_assertions_dataset,
    dataset_version_dataset,
    output_statistics_output_dataset,
    schema_dataset,
)

from prodigy_opentext._prodigy.database import DatabaseTarget
from prodigy_opentext.core.release import MANIFEST_NAME
from prodigy_opentext.core.validation import FRAMES

PRODIGY_SCHEME = "prodigy"
FILE_NAMESPACE = "file"
"""OpenLineage's namespace of local files (its ``LocalFileSystem`` naming, and Airflow's for file assets)."""

APPROVALS_FACET = "prodigyOpentextApprovals"
VALIDATION_FACET = "prodigyOpentextValidation"
AGREEMENT_FACET = "prodigyOpentextAgreement"

DISPUTES_TABLE = "disputes"
"""The validation's table read from the disputes file; every other table is read from the export."""


@define
class ApprovalsRunFacet(RunFacet):
    """The approvals a release holds, as OpenText recorded them: who decided what, when, in which process."""

    approvals: list[dict[str, Any]]


@define
class ValidationRunFacet(RunFacet):
    """The Great Expectations outcome: overall, in figures, per rule (no sample rows: they hold content)."""

    success: bool
    statistics: dict[str, int]
    parameters: dict[str, Any]
    rows: dict[str, int]
    expectations: list[dict[str, Any]]


@define
class AgreementRunFacet(RunFacet):
    """Inter-annotator agreement of the released data, as its manifest records it (in camelCase, as
    OpenLineage facets name their fields)."""

    method: str | None
    value: float | None
    nItems: int
    nAnnotators: int
    observedAgreement: float | None
    spanF1: float | None = None
    pairwise: dict[str, Any] = field(factory=dict)
    perLabel: dict[str, Any] = field(factory=dict)


def prodigy_namespace(target: DatabaseTarget) -> str:
    """Where the datasets live, without credentials: ``prodigy://<host>:<port>/<database>`` for a database
    server, ``prodigy://<file>`` for SQLite (so ``prodigy:///srv/prodigy/prodigy.db``)."""
    if target.sqlite_path is not None:
        return f"{PRODIGY_SCHEME}://{Path(target.sqlite_path).absolute()}"
    url = target.url
    return f"{PRODIGY_SCHEME}://{url.host}:{url.port}/{url.database}"


def prodigy_dataset(target: DatabaseTarget, dataset: str, version: str | None) -> InputDataset:
    """A Prodigy dataset version as an input: named ``<dataset>@<version>`` (``b<last example id>``, the
    version batch approval and the release name), with the version also as OpenLineage's version facet."""
    if version is None:
        return InputDataset(namespace=prodigy_namespace(target), name=dataset)
    return InputDataset(
        namespace=prodigy_namespace(target),
        name=f"{dataset}@{version}",
        facets={"version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=version)},
    )


def file_name(path: str | os.PathLike) -> str:
    return str(Path(path).absolute())


def file_input(path: str | os.PathLike, **input_facets: Any) -> InputDataset:
    return InputDataset(namespace=FILE_NAMESPACE, name=file_name(path), inputFacets=input_facets)


def file_output(
    path: str | os.PathLike,
    *,
    sha256: str | None = None,
    rows: int | None = None,
    size: int | None = None,
    schema: schema_dataset.SchemaDatasetFacet | None = None,
) -> OutputDataset:
    """A written file: its sha256 as its version, its rows and bytes as output statistics."""
    facets: dict[str, Any] = {}
    if sha256:
        facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=sha256)
    if schema is not None:
        facets["schema"] = schema
    statistics = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=rows, size=size)
    return OutputDataset(
        namespace=FILE_NAMESPACE,
        name=file_name(path),
        facets=facets,
        outputFacets={"outputStatistics": statistics},
    )


def parquet_schema(path: str | os.PathLike) -> schema_dataset.SchemaDatasetFacet:
    """The columns of a Parquet file, read from its footer only."""
    import pyarrow.parquet as pq

    return schema_dataset.SchemaDatasetFacet(
        fields=[
            schema_dataset.SchemaDatasetFacetFields(name=column.name, type=str(column.type))
            for column in pq.read_schema(path)
        ]
    )


# --- Run facets ------------------------------------------------------------------------------------------


def approvals_facet(approvals: Iterable[Mapping[str, Any]]) -> ApprovalsRunFacet:
    return ApprovalsRunFacet(
        approvals=[
            {
                "kind": approval.get("kind"),
                "outcome": approval.get("outcome"),
                "approver": approval.get("approver"),
                "decidedAt": approval.get("decided_at"),
                "processInstanceId": approval.get("process_instance_id"),
                "businessKey": approval.get("business_key"),
                "endActivityId": approval.get("end_activity_id"),
                "comments": [dict(comment) for comment in approval.get("comments") or ()],
            }
            for approval in approvals
        ]
    )


def _scalar(value: Any) -> Any:
    return value if value is None or isinstance(value, bool | int | float | str) else None


def validation_facet(summary: Mapping[str, Any]) -> ValidationRunFacet:
    """The validation summary (``AnnotationValidationOperator``'s) without its sample rows."""
    return ValidationRunFacet(
        success=bool(summary.get("success")),
        statistics=dict(summary.get("statistics") or {}),
        parameters=dict(summary.get("parameters") or {}),
        rows=dict(summary.get("rows") or {}),
        expectations=[
            {
                "table": expectation.get("frame"),
                "rule": expectation.get("rule"),
                "expectation": expectation.get("expectation"),
                "column": expectation.get("column"),
                "success": expectation.get("success"),
                "observedValue": _scalar(expectation.get("observed_value")),
                "unexpectedCount": expectation.get("unexpected_count"),
                "unexpectedPercent": expectation.get("unexpected_percent"),
            }
            for expectation in summary.get("expectations") or ()
        ],
    )


def quality_assertions(
    summary: Mapping[str, Any], tables: Collection[str]
) -> data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet:
    """OpenLineage's standard assertions facet: one per rule the suites of ``tables`` checked."""
    return data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(
        assertions=[
            data_quality_assertions_dataset.Assertion(
                assertion=expectation["expectation"],
                success=bool(expectation["success"]),
                column=expectation.get("column"),
                name=expectation.get("rule"),
            )
            for expectation in summary.get("expectations") or ()
            if expectation.get("frame") in tables
        ]
    )


def agreement_facet(agreement: Mapping[str, Any]) -> AgreementRunFacet:
    return AgreementRunFacet(
        method=agreement.get("method"),
        value=agreement.get("value"),
        nItems=int(agreement.get("n_items") or 0),
        nAnnotators=int(agreement.get("n_annotators") or 0),
        observedAgreement=agreement.get("observed_agreement"),
        spanF1=agreement.get("span_f1"),
        pairwise=dict(agreement.get("pairwise") or {}),
        perLabel=dict(agreement.get("per_label") or {}),
    )


# --- What each operator reports --------------------------------------------------------------------------


def export_lineage(
    target: DatabaseTarget, dataset: str, version: str | None, manifest: Mapping[str, Any]
) -> OperatorLineage:
    """An export: the Prodigy dataset version read → the data file (and the quarantine file, if rows went
    there)."""
    schema = parquet_schema(manifest["path"]) if manifest.get("format") == "parquet" else None
    outputs = [
        file_output(
            manifest["path"],
            sha256=manifest["sha256"],
            rows=manifest["rows"],
            size=manifest["bytes"],
            schema=schema,
        )
    ]
    if manifest.get("quarantined"):
        outputs.append(file_output(manifest["quarantine_path"], rows=manifest["quarantined"]))
    return OperatorLineage(inputs=[prodigy_dataset(target, dataset, version)], outputs=outputs)


def validation_lineage(
    export_path: str | os.PathLike, disputes_path: str | os.PathLike | None, summary: Mapping[str, Any] | None
) -> OperatorLineage:
    """A validation: the files checked, each with the standard assertions of its suite, and the outcome as a
    run facet. Without a summary (the suites did not run) only the files are named."""
    checked = [
        (export_path, [table for table in FRAMES if table != DISPUTES_TABLE]),
        (disputes_path, [DISPUTES_TABLE]),
    ]
    inputs = [
        file_input(
            path, **({"dataQualityAssertions": quality_assertions(summary, tables)} if summary else {})
        )
        for path, tables in checked
        if path
    ]
    run_facets = {VALIDATION_FACET: validation_facet(summary)} if summary else {}
    return OperatorLineage(inputs=inputs, run_facets=run_facets)


def release_lineage(
    target: DatabaseTarget, staged: Mapping[str, Any], release: Mapping[str, Any] | None
) -> OperatorLineage:
    """A release: the Prodigy dataset version and the staged files it was written from → every file of the
    release folder (its manifest included), with the approvals, validation and agreement of its manifest.
    Without a release (it was refused or failed) only the inputs are named."""
    inputs = [prodigy_dataset(target, staged["dataset"], staged["version"])]
    inputs += [file_input(staged[name]) for name in ("annotations", "disputes") if staged.get(name)]
    if release is None:
        return OperatorLineage(inputs=inputs)
    folder = Path(release["path"])
    manifest_path = folder / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    outputs = [
        file_output(
            folder / name, sha256=entry.get("sha256"), rows=entry.get("rows"), size=entry.get("bytes")
        )
        for name, entry in sorted(manifest.get("files", {}).items())
    ]
    outputs.append(
        file_output(manifest_path, sha256=release["manifest_sha256"], size=manifest_path.stat().st_size)
    )
    run_facets: dict[str, RunFacet] = {APPROVALS_FACET: approvals_facet(manifest.get("approvals") or ())}
    if manifest.get("validation"):
        run_facets[VALIDATION_FACET] = validation_facet(manifest["validation"])
    if manifest.get("agreement"):
        run_facets[AGREEMENT_FACET] = agreement_facet(manifest["agreement"])
    return OperatorLineage(inputs=inputs, outputs=outputs, run_facets=run_facets)
