"""The steps of the controlled release (flow 3), as functions the DAG's tasks call.

A release is only written when the data is complete and valid (Great Expectations), when OpenText holds
the batch approval and the release sign-off for exactly this dataset version (read back from OpenText,
never taken from XCom or run params), and when policy allows it (regulated data needs its compliance
approval). The release itself is immutable: an equal rerun is a no-op, a different one an error.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from prodigy_opentext.audit import AuditLog
from prodigy_opentext.consensus import build_consensus
from prodigy_opentext.governance import (
    BATCH_APPROVAL_PROCESS,
    RELEASE_SIGNOFF_PROCESS,
    ApprovalRefused,
    business_key,
    check_approval,
    is_regulated,
    latest_instance,
    version_last_example_id,
)
from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook
from prodigy_opentext.hooks.prodigy import ProdigyHook
from prodigy_opentext.records import RecordSummary, annotator_of, decode_record, parse_record
from prodigy_opentext.release import ReleaseConflict, verify_release, write_release

log = logging.getLogger(__name__)


class ReleaseRefused(ApprovalRefused, AirflowFailException):
    """OpenText does not hold the approvals a release needs: fails the task without retries."""


class ReleaseVersionTaken(ReleaseConflict, AirflowFailException):
    """The version was released with other content: fails without retries; the existing release stays."""


MLOPS_HANDOFF_CONN_ID = "mlops_handoff"


def resolve_release_target(
    dataset: str, version: str, prodigy_conn_id: str = ProdigyHook.default_conn_name
) -> dict[str, Any]:
    """Check that the dataset and version exist in Prodigy; read the dataset's own policy facts."""
    last_id = version_last_example_id(version)
    hook = ProdigyHook(prodigy_conn_id)
    meta = hook.get_meta(dataset)
    newest = hook.last_example_id(dataset)
    if newest is None or newest < last_id:
        raise ValueError(f"dataset {dataset!r} has no version {version!r} (its last example id is {newest})")
    labels = meta.get("labels")
    if not labels:
        raise ValueError(
            f'dataset {dataset!r} has no approved label scheme: set "labels" in its meta '
            "(e.g. when the annotation request created it)"
        )
    return {
        "dataset": dataset,
        "version": version,
        "last_example_id": last_id,
        "regulated": is_regulated(meta),
        "label_scheme": list(labels),
    }


def stage_release_data(
    target: dict[str, Any], staging_dir: Path, prodigy_conn_id: str = ProdigyHook.default_conn_name
) -> dict[str, Any]:
    """Export the version, merge every annotator's answers into final examples, list open disputes."""
    staging_dir.mkdir(parents=True, exist_ok=True)
    answers = staging_dir / "answers.jsonl"
    export = ProdigyHook(prodigy_conn_id).export_jsonl(
        target["dataset"], answers, until_id=target["last_example_id"]
    )
    with open(answers, "rb") as lines:
        tasks = [decode_record(line, row=n) for n, line in enumerate(lines, start=1) if line.strip()]
    if export.get("quarantined"):
        raise ValueError(
            f"{target['dataset']}@{target['version']}: {export['quarantined']} stored rows are not valid "
            f"Prodigy examples (see {export.get('quarantine_path')}); a release never leaves rows out"
        )
    consensus = build_consensus(tasks)
    merged, disputes = staging_dir / "annotations.jsonl", staging_dir / "disputes.jsonl"
    _write_jsonl(merged, consensus.merged)
    _write_jsonl(disputes, (d.as_dict() for d in consensus.disputes))
    log.info(
        "staged %s@%s: %d answers -> %d examples, %d open disputes, %d quarantined rows",
        target["dataset"],
        target["version"],
        len(tasks),
        len(consensus.merged),
        len(consensus.disputes),
        export.get("quarantined", 0),
    )
    return {
        **target,
        "answers": str(answers),
        "annotations": str(merged),
        "disputes": str(disputes),
        "sessions": sorted({a for a in map(annotator_of, tasks) if a}),
        "consensus": consensus.counts(),
        "export": {k: export.get(k) for k in ("rows", "quarantined", "quarantine_path", "sha256")},
    }


def _write_jsonl(path: Path, rows) -> None:
    with open(path, "w") as out:
        for row in rows:
            out.write(json.dumps(row, sort_keys=True) + "\n")


def release_signoff_request(staged: dict[str, Any], validation: dict[str, Any]) -> dict[str, Any]:
    """What the release sign-off process is started with: the batch, its checks and their results."""
    return {
        "business_key": business_key(RELEASE_SIGNOFF_PROCESS, staged["dataset"], staged["version"]),
        "process_name": f"Release {staged['dataset']} {staged['version']}",
        "variables": {
            "dataset": staged["dataset"],
            "version": staged["version"],
            "regulated": staged["regulated"],
            "examples": staged["consensus"]["merged"],
            "validation_success": bool(validation.get("success")),
            "validation": json.dumps(validation, sort_keys=True, default=str)[:4000],
        },
    }


APPROVAL_PROCESSES = {"batch_approval": BATCH_APPROVAL_PROCESS, "release_signoff": RELEASE_SIGNOFF_PROCESS}


def verify_approvals(
    target: dict[str, Any],
    kinds: tuple[str, ...] = tuple(APPROVAL_PROCESSES),
    reviewed_sha256: str | None = None,
    opentext_conn_id: str = OpenTextWorkflowHook.default_conn_name,
) -> list[dict[str, Any]]:
    """Read the approvals of this dataset version back from OpenText; refuse when one is missing.

    ``reviewed_sha256`` (the checksum of the data about to be released) must be the checksum the batch
    approval was requested for: reviewers approved exactly these answers.
    """
    hook = OpenTextWorkflowHook(opentext_conn_id)
    approvals = []
    for kind in kinds:
        process_key = APPROVAL_PROCESSES[kind]
        key = business_key(process_key, target["dataset"], target["version"])
        instances = hook.historic_processes(
            processDefinitionKey=process_key, businessKey=key, includeProcessVariables="true"
        )
        latest = latest_instance(instances)
        decision = hook.read_decision(latest["id"]) if latest else None
        batch = kind == "batch_approval"
        try:
            approvals.append(
                check_approval(
                    kind,
                    key,
                    instances,
                    decision,
                    regulated=batch and target["regulated"],
                    reviewed_sha256=reviewed_sha256 if batch else None,
                )
            )
        except ApprovalRefused as refused:
            raise ReleaseRefused(str(refused)) from refused
        log.info(
            "%s of %s@%s: approved by %s at %s",
            kind,
            target["dataset"],
            target["version"],
            approvals[-1]["approver"],
            approvals[-1]["decided_at"],
        )
    return approvals


def publish_release(
    staged: dict[str, Any],
    validation: dict[str, Any],
    approvals: list[dict[str, Any]],
    *,
    release_root: Path,
    audit_path: Path,
    run_id: str,
) -> dict[str, Any]:
    """Write the immutable release ``<release_root>/releases/<dataset>/<version>/`` and its audit entry."""
    try:
        result = write_release(
            release_root,
            staged["dataset"],
            staged["version"],
            {"annotations.jsonl": staged["annotations"]},
            attachments={"disputes.jsonl": staged["disputes"]},
            validation=validation,
            approvals=approvals,
            source_dataset=staged["dataset"],
            sessions=staged["sessions"],
            run_id=run_id,
        )
    except ReleaseConflict as conflict:
        raise ReleaseVersionTaken(conflict.dataset, conflict.version, conflict.differences) from None
    manifest_path = result.path / "manifest.json"
    AuditLog(audit_path).append(
        "airflow",
        "release_written",
        f"{staged['dataset']}@{staged['version']}",
        {"path": str(result.path), "approvals": approvals, "run_id": run_id},
        event_key=f"release:{staged['dataset']}:{staged['version']}",
    )
    log.info(
        "release %s %s",
        result.path,
        "already existed (equal content)" if result.already_released else "written",
    )
    return {
        "dataset": staged["dataset"],
        "version": staged["version"],
        "path": str(result.path),
        "manifest": str(manifest_path),
        "already_released": result.already_released,
        "examples": result.manifest["counts"]["examples"],
    }


def hand_off_release(
    release: dict[str, Any], http_conn_id: str = MLOPS_HANDOFF_CONN_ID
) -> dict[str, Any] | None:
    """POST the release summary to MLOps when the ``mlops_handoff`` HTTP connection exists; else say so."""
    from airflow.providers.http.hooks.http import HttpHook
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        BaseHook.get_connection(http_conn_id)
    except AirflowNotFoundException:
        log.info(
            "no %r connection: the release is announced through the annotation_releases asset only",
            http_conn_id,
        )
        return None
    response = HttpHook(method="POST", http_conn_id=http_conn_id).run(
        endpoint=None, json=release, headers={"Content-Type": "application/json"}
    )
    log.info("handed %s@%s to MLOps: HTTP %s", release["dataset"], release["version"], response.status_code)
    return {"status": response.status_code, "body": response.text[:2000]}


def check_release(manifest_path: str) -> dict[str, Any]:
    """What a consumer runs before using a release: every checksum re-computed against the manifest."""
    return verify_release(Path(manifest_path).parent)


def training_examples_summary(release_path: str) -> dict[str, Any]:
    """Load a verified release's examples the way a training job would, and summarise what it got."""
    summary = RecordSummary()
    with open(Path(release_path) / "annotations.jsonl", "rb") as lines:
        for n, line in enumerate(lines, start=1):
            summary.add(parse_record(line, row=n))
    log.info("loaded %d examples from %s: labels %s", summary.total, release_path, dict(summary.by_label))
    return {"path": release_path, **summary.as_dict()}
