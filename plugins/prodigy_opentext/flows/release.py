"""The steps of the controlled release (flow 3), as functions the DAG's tasks call.

DAG ``dataset_release`` (``dags/dataset_release.py``) and its example consumer ``mlops_release_consumer``
(``dags/mlops_release_consumer.py``); process model ``include/bpmn/dataset_release_signoff.bpmn20.xml``;
tests ``tests/flows/test_release.py``.

A release is only written when the data is complete and valid (Great Expectations), when OpenText holds
the batch approval and the release sign-off for exactly this dataset version (read back from OpenText,
never taken from XCom or run params), and when policy allows it (regulated data needs its compliance
approval). The release itself is immutable: an equal rerun is a no-op, a different one an error.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowSkipException

from prodigy_opentext.core.approvals import APPROVAL_PROCESSES, RELEASE_SIGNOFF_PROCESS
from prodigy_opentext.core.audit import AuditLog
from prodigy_opentext.core.batches import (
    approved_version,
    business_key,
    is_regulated,
    review_state,
    version_last_example_id,
)
from prodigy_opentext.core.export import file_digest
from prodigy_opentext.core.paths import run_folder_name
from prodigy_opentext.core.payloads import (
    ApprovalRecord,
    ApprovedVersion,
    HandOff,
    ProcessRequest,
    PublishedRelease,
    ReleaseTarget,
    StagedRelease,
    TrainingSet,
)
from prodigy_opentext.core.qa import reworks_in
from prodigy_opentext.core.records import RecordSummary, parse_record
from prodigy_opentext.core.release import MANIFEST_NAME, verify_release, write_release
from prodigy_opentext.core.review_report import (
    DATASET_CARD_NAME,
    REVIEW_REPORT_NAME,
    dataset_card_html,
    licence_of,
    review_report_html,
)
from prodigy_opentext.exceptions import ApprovalRefused, ReleaseConflict
from prodigy_opentext.failures import DatasetRefused, ReleaseDistrusted, ReleaseVersionTaken
from prodigy_opentext.flows._approvals import annotators_of, read_approval, require_qa, verify_approvals
from prodigy_opentext.flows._shared import (
    JsonlWriter,
    StreamedBatch,
    checked_name,
    governable_dataset,
    record_in_audit_log,
    whole_export,
)
from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook
from prodigy_opentext.hooks.prodigy import ProdigyHook

log = logging.getLogger(__name__)

MLOPS_HANDOFF_CONN_ID = "mlops_handoff"


def resolve_release_target(
    dataset: str, version: str | None, prodigy_conn_id: str = ProdigyHook.default_conn_name
) -> ReleaseTarget:
    """Check that the dataset and version exist in Prodigy; read the dataset's own policy facts. No version
    (an empty trigger form) means the one the dataset's latest review approved, as its meta records it.

    What retrying cannot change fails at once, before anyone is asked to sign off
    (:func:`~prodigy_opentext.flows._shared.governable_dataset`), and so does a version the dataset
    does not hold.
    """
    meta = governable_dataset(dataset, prodigy_conn_id)
    if not version:
        version = approved_version(meta)
        if version is None:
            review = review_state(meta)
            raise DatasetRefused(
                f"dataset {dataset!r} has no approved version to release: its latest review is "
                f"{review.get('version') or 'none'} ({review.get('status') or 'never reviewed'}); give the "
                "version (b<last example id>) of an approved batch"
            )
        log.info("no version given: %s@%s, the version its latest review approved", dataset, version)
    try:
        last_id = version_last_example_id(version)
    except ValueError as malformed:
        raise DatasetRefused(str(malformed)) from None
    newest = ProdigyHook(prodigy_conn_id).last_example_id(dataset)
    if newest is None or newest < last_id:
        raise DatasetRefused(
            f"dataset {dataset!r} has no version {version!r} (its last example id is {newest})"
        )
    labels = meta["labels"]
    return ReleaseTarget(
        dataset=dataset,
        version=version,
        last_example_id=last_id,
        regulated=is_regulated(meta),
        label_scheme=list(labels),
    )


def stage_release_data(
    target: ReleaseTarget,
    staging_root: Path,
    run_id: str,
    audit_path: Path,
    prodigy_conn_id: str = ProdigyHook.default_conn_name,
) -> StagedRelease:
    """Export the version into ``<staging_root>/<dataset>/<version>/<run>/``, merge every annotator's
    answers into final examples, list open disputes, and keep the figures of the sign-off's review report
    (with the QA rounds ``audit_path`` holds). The database is read once, into ``answers.jsonl``, which is
    then read back one input at a time (:class:`~prodigy_opentext.flows._shared.StreamedBatch`), so memory
    does not grow with the batch."""
    staging_dir = (
        staging_root
        / checked_name(target["dataset"], "dataset")
        / checked_name(target["version"], "version")
        / run_folder_name(run_id)
    )
    batch = StreamedBatch(target["dataset"], target["last_example_id"], staging_dir, prodigy_conn_id)
    whole_export(batch.export)
    annotations, disputes = staging_dir / "annotations.jsonl", staging_dir / "disputes.jsonl"
    with JsonlWriter(annotations, sort_keys=False) as finals, JsonlWriter(disputes) as still_open:
        for item in batch.items():
            if item.final is not None:
                finals.write(item.final)
            elif item.dispute is not None:
                still_open.write(item.dispute.as_dict())
    figures = batch.review_figures(
        target["version"], regulated=bool(target["regulated"]), audit_path=audit_path
    )
    figures_path = staging_dir / "review_figures.json"
    figures_path.write_text(json.dumps(figures, sort_keys=True, default=str))
    sessions = sorted(batch.sessions)
    annotators = annotators_of(target["dataset"], sessions, prodigy_conn_id)
    export, consensus = batch.export, batch.merger.counts()
    log.info(
        "staged %s@%s: %d answers -> %d examples, %d open disputes",
        target["dataset"],
        target["version"],
        figures["answers"],
        consensus["merged"],
        consensus["disputes"],
    )
    return StagedRelease(
        **target,
        answers=str(batch.answers),
        annotations=str(annotations),
        disputes=str(disputes),
        sessions=sessions,
        annotators=annotators,
        adjudications=batch.adjudicated,
        reworked=reworks_in(batch.corrections),
        consensus=consensus,
        export={k: export[k] for k in ("rows", "quarantined", "quarantine_path", "sha256")},
        reviewed_sha256=batch.sha256,
        non_finite_as_null=finals.nulled + still_open.nulled,
        agreement=figures["agreement"],
        licence=licence_of(ProdigyHook(prodigy_conn_id).get_meta(target["dataset"])),
        review_figures=str(figures_path),
    )


def release_signoff_request(staged: StagedRelease, validation: Mapping[str, Any]) -> ProcessRequest:
    """What the release sign-off process is started with: the batch, its checks and their results, and the
    review report (with the validation) attached for the people who sign off."""
    figures = json.loads(Path(staged["review_figures"]).read_text())
    report = Path(staged["review_figures"]).with_name(REVIEW_REPORT_NAME)
    report.write_text(review_report_html(figures, validation))
    failed = [
        f"{e['frame']}: {e['rule']}" for e in validation.get("expectations") or () if not e.get("success")
    ]
    return ProcessRequest(
        business_key=business_key(RELEASE_SIGNOFF_PROCESS, staged["dataset"], staged["version"]),
        process_name=f"Release {staged['dataset']} {staged['version']}",
        variables={
            "dataset": staged["dataset"],
            "version": staged["version"],
            "regulated": staged["regulated"],
            "examples": staged["consensus"]["merged"],
            "validation_success": bool(validation.get("success")),
            "validation_failed": ", ".join(failed) or "none",
            "agreement": staged["agreement"]["value"],
            "percent_agreement": staged["agreement"]["observed_agreement"],
            "review_report": REVIEW_REPORT_NAME,
        },
        attachments={REVIEW_REPORT_NAME: str(report)},
    )


def check_batch_approval(target: ReleaseTarget) -> None:
    """The batch approval of this version holds in OpenText, and its QA passed where its dataset asks for
    QA, checked before anything is staged (the check after staging repeats both, with the data's checksum
    and its annotators)."""
    require_qa(target)
    verify_approvals(target, kinds=("batch_approval",))


def check_release_approvals(staged: StagedRelease) -> list[ApprovalRecord]:
    """Every approval the release needs holds in OpenText: of exactly the staged data, by nobody who
    annotated it (:func:`~prodigy_opentext.flows._approvals.verify_approvals`), and its QA passed. The
    dataset is checked again first: a regulated dataset frozen while its sign-off waited is refused."""
    governable_dataset(staged["dataset"])
    require_qa(staged)
    return verify_approvals(
        staged, reviewed_sha256=staged["reviewed_sha256"], annotators=staged["annotators"]
    )


def publish_release(
    staged: StagedRelease,
    validation: Mapping[str, Any],
    approvals: list[ApprovalRecord],
    *,
    release_root: Path,
    audit_path: Path,
    run_id: str,
) -> PublishedRelease:
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
            adjudications=staged["adjudications"],
            reworked=staged["reworked"],
            source_dataset=staged["dataset"],
            sessions=staged["sessions"],
            agreement=staged["agreement"],
            regulated=bool(staged["regulated"]),
            licence=staged["licence"],
            dataset_card=(DATASET_CARD_NAME, dataset_card_html),
            run_id=run_id,
        )
    except ReleaseConflict as conflict:
        raise ReleaseVersionTaken(conflict.dataset, conflict.version, conflict.differences) from None
    manifest_sha256 = file_digest(result.path / MANIFEST_NAME).sha256
    record_in_audit_log(
        audit_path,
        "release_written",
        f"{staged['dataset']}@{staged['version']}",
        {
            "path": str(result.path),
            "manifest_sha256": manifest_sha256,
            "dataset_card_sha256": result.manifest["dataset_card"]["sha256"],
            "approvals": approvals,
            "run_id": run_id,
        },
        event_key=f"release:{staged['dataset']}:{staged['version']}",
    )
    log.info(
        "release %s %s",
        result.path,
        "already existed (equal content)" if result.already_released else "written",
    )
    return PublishedRelease(
        dataset=staged["dataset"],
        version=staged["version"],
        path=str(result.path),
        manifest=str(result.path / MANIFEST_NAME),
        manifest_sha256=manifest_sha256,
        idempotency_key=f"{staged['dataset']}:{staged['version']}:{manifest_sha256}",
        already_released=result.already_released,
        examples=result.manifest["counts"]["examples"],
    )


def announcement(release: PublishedRelease, audit_path: Path) -> PublishedRelease:
    """The release for the ``annotation_releases`` asset event, or :class:`AirflowSkipException` (no
    event) when it was announced before: a rerun of an equal release announces nothing again."""
    announced = AuditLog(audit_path).find(f"release_announced:{release['idempotency_key']}")
    if announced is not None:
        raise AirflowSkipException(
            f"{release['dataset']}@{release['version']} was announced at {announced['ts']}: no second event"
        )
    return release


def hand_off_release(
    release: PublishedRelease, audit_path: Path, http_conn_id: str = MLOPS_HANDOFF_CONN_ID
) -> HandOff | None:
    """Record the announcement, then POST the release summary to MLOps once.

    The POST goes to the ``mlops_handoff`` HTTP connection when it exists, with the release's
    idempotency key in the body and the ``Idempotency-Key`` header; only a successful one is recorded,
    so a rerun hands off again exactly when the earlier hand-off failed.
    """
    from airflow.providers.http.hooks.http import HttpHook
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    key, subject = release["idempotency_key"], f"{release['dataset']}@{release['version']}"
    details = {"idempotency_key": key, "manifest_sha256": release["manifest_sha256"]}
    record_in_audit_log(
        audit_path, "release_announced", subject, details, event_key=f"release_announced:{key}"
    )
    handed = AuditLog(audit_path).find(f"release_handed_off:{key}")
    if handed is not None:
        log.info("%s was handed to MLOps at %s: not again", subject, handed["ts"])
        return None
    try:
        BaseHook.get_connection(http_conn_id)
    except AirflowNotFoundException:
        log.info(
            "no %r connection: the release is announced through the annotation_releases asset only",
            http_conn_id,
        )
        return None
    response = HttpHook(method="POST", http_conn_id=http_conn_id).run(
        endpoint=None, json=release, headers={"Content-Type": "application/json", "Idempotency-Key": key}
    )
    record_in_audit_log(
        audit_path,
        "release_handed_off",
        subject,
        {**details, "status": response.status_code},
        event_key=f"release_handed_off:{key}",
    )
    log.info("handed %s to MLOps: HTTP %s", subject, response.status_code)
    return HandOff(status=response.status_code, body=response.text[:2000])


# What a consumer of releases runs before and while using one (dags/mlops_release_consumer.py).


def unconsumed_releases(
    announced: Iterable[Mapping[str, Any]],
    ledger: Path,
    release_root: Path,
    opentext_conn_id: str = OpenTextWorkflowHook.default_conn_name,
) -> list[dict[str, Any]]:
    """The releases asset events announced that this consumer has not consumed yet, each verified.

    A consumer trusts nothing it cannot check: the release must be where the project writes releases
    (``<release_root>/releases/<dataset>/<version>/``), every checksum is re-computed against the
    manifest, and OpenText must hold the approvals the manifest lists (:func:`confirm_approvals`).
    Which release it is (its idempotency key) comes from the manifest on disk, not from the event. One
    already in the consumer's ``ledger``, or announced twice, is taken once.
    """
    book, fresh = AuditLog(ledger), {}
    for event in announced:
        release = verified_release(event, release_root)
        key = release["idempotency_key"]
        if key in fresh or book.find(f"consumed:{key}") is not None:
            log.info("%s@%s was consumed before: skipped", release["dataset"], release["version"])
            continue
        confirm_approvals(release, opentext_conn_id)
        fresh[key] = release
    return list(fresh.values())


def verified_release(announced: Mapping[str, Any], release_root: Path) -> dict[str, Any]:
    """A release an asset event announced, in its place under ``release_root`` and with every checksum
    re-computed against its manifest; raises :class:`ReleaseDistrusted` otherwise."""
    manifest_path = Path(announced["manifest"])
    folder = manifest_path.parent.resolve()
    releases = (Path(release_root) / "releases").resolve()
    if folder.parent.parent != releases or manifest_path.name != MANIFEST_NAME:
        raise ReleaseDistrusted(
            f"{manifest_path} is not a manifest under the release root {releases}: a consumer loads "
            "releases from there only"
        )
    manifest = verify_release(folder)
    if (manifest.get("dataset"), manifest.get("version")) != (folder.parent.name, folder.name):
        raise ReleaseDistrusted(
            f"{manifest_path} names release {manifest.get('dataset')} {manifest.get('version')}, but lies "
            f"in the folder of {folder.parent.name} {folder.name}"
        )
    key = f"{manifest['dataset']}:{manifest['version']}:{file_digest(manifest_path).sha256}"
    return {
        "manifest": str(manifest_path),
        "path": str(manifest_path.parent),
        "idempotency_key": key,
        **manifest,
    }


def confirm_approvals(
    release: Mapping[str, Any], opentext_conn_id: str = OpenTextWorkflowHook.default_conn_name
) -> None:
    """OpenText holds, for this dataset version, the very approvals the manifest lists (the same process
    instances, approved); raises :class:`ReleaseDistrusted` naming the first that it does not."""
    listed = {approval.get("kind"): approval.get("process_instance_id") for approval in release["approvals"]}
    subject = ApprovedVersion(dataset=release["dataset"], version=release["version"], regulated=False)
    hook = OpenTextWorkflowHook(opentext_conn_id)
    for kind in APPROVAL_PROCESSES:
        try:
            approval = read_approval(hook, kind, subject)
        except ApprovalRefused as refused:
            raise ReleaseDistrusted(f"release {release['path']}: {refused}") from None
        if listed.get(approval["kind"]) != approval["process_instance_id"]:
            raise ReleaseDistrusted(
                f"release {release['path']} lists {approval['kind']} {listed.get(approval['kind'])!r}, "
                f"but OpenText's is process {approval['process_instance_id']}"
            )


def consume_release(release: Mapping[str, Any], ledger: Path, consumer: str) -> TrainingSet:
    """Load a verified release for training, then note it in the consumer's ledger (once per release)."""
    loaded = training_examples_summary(release["path"])
    subject = f"{release['dataset']}@{release['version']}"
    details = {"idempotency_key": release["idempotency_key"], "examples": loaded["total"]}
    AuditLog(ledger).append(
        consumer, "release_consumed", subject, details, event_key=f"consumed:{release['idempotency_key']}"
    )
    return loaded


def training_examples_summary(release_path: str) -> TrainingSet:
    """Load a verified release's examples the way a training job would, and summarise what it got."""
    summary = RecordSummary()
    with open(Path(release_path) / "annotations.jsonl", "rb") as lines:
        for n, line in enumerate(lines, start=1):
            summary.add(parse_record(line, row=n))
    log.info("loaded %d examples from %s: labels %s", summary.total, release_path, summary.by_label)
    return TrainingSet(path=release_path, **summary.as_dict())


def first_release_holding(release_root: Path, dataset: str, wanted: set[Any]) -> tuple[str, Path] | None:
    """The oldest published release of ``dataset`` whose examples hold every input hash in ``wanted``: its
    version and manifest (what closes a request its tasks were added for); None while none does."""
    folder = release_root / "releases" / checked_name(dataset, "dataset")
    if not folder.is_dir():
        return None
    versions = []
    for manifest in folder.glob(f"*/{MANIFEST_NAME}"):
        try:
            versions.append((version_last_example_id(manifest.parent.name), manifest))
        except ValueError:
            continue
    for _, manifest in sorted(versions):
        held = {
            json.loads(line).get("_input_hash")
            for line in (manifest.parent / "annotations.jsonl").read_text().splitlines()
            if line.strip()
        }
        if wanted <= held:
            return manifest.parent.name, manifest
    return None
