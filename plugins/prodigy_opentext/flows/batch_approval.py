"""The steps of batch approval (flow 1), as functions the DAG's tasks call.

DAG ``annotation_batch_approval`` (``dags/annotation_batch_approval.py``); process model
``include/bpmn/annotation_batch_approval.bpmn20.xml``; tests ``tests/flows/test_batch_approval.py``.

They join the hooks to the governance rules: which batches are ready, what reviewers are shown, how their
decision is recorded in Prodigy and in the audit log, and which release run an approval starts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

from airflow.sdk.exceptions import AirflowSkipException

from prodigy_opentext._opentext.variables import from_rest_variables
from prodigy_opentext.core.approvals import BATCH_APPROVAL_PROCESS, approval_record
from prodigy_opentext.core.batches import (
    Batch,
    ReviewStatus,
    datasets_ready_for_review,
    is_regulated,
    review_state,
    version_last_example_id,
)
from prodigy_opentext.core.payloads import (
    ApprovedVersion,
    BatchStatistics,
    BatchToReview,
    JudgedDecision,
    ProcessRequest,
    RecordedDecision,
    ReviewPackage,
    RunRequest,
)
from prodigy_opentext.core.review_report import REVIEW_REPORT_NAME, review_report_html
from prodigy_opentext.exceptions import ApprovalRefused, DatasetNotGovernable, UnsafeName
from prodigy_opentext.failures import DatasetRefused
from prodigy_opentext.flows._approvals import annotators_of, read_approval, require_qa
from prodigy_opentext.flows._shared import (
    StreamedBatch,
    checked_name,
    governable_dataset,
    record_in_audit_log,
    whole_export,
)
from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook
from prodigy_opentext.hooks.prodigy import ProdigyHook

log = logging.getLogger(__name__)


def find_ready_batches(prodigy_conn_id: str = ProdigyHook.default_conn_name) -> list[BatchToReview]:
    """The batches to review: every dataset marked ready (or requested: a review whose wait failed).

    A dataset that cannot be governed as it is (its name cannot be a folder, no label scheme) is refused
    before any reviewer is asked: it is marked ``refused`` in its meta, with the reason, and the others go on.
    """
    batches = list(_ready_batches(prodigy_conn_id))
    log.info("batches ready for review: %s", [f"{b['dataset']}@{b['version']}" for b in batches] or "none")
    return batches


def _ready_batches(prodigy_conn_id: str) -> Iterator[BatchToReview]:
    """The batches of :func:`find_ready_batches`, one at a time, refusing the datasets that cannot be governed
    on the way."""
    hook = ProdigyHook(prodigy_conn_id)
    for name in datasets_ready_for_review(hook.list_datasets()):
        try:
            batch = batch_to_review(name, prodigy_conn_id=prodigy_conn_id)
        except (UnsafeName, DatasetNotGovernable) as refused:
            log.error("dataset %r refused: %s", name, refused)
            review = {
                **review_state(hook.get_meta(name)),
                "status": ReviewStatus.REFUSED,
                "reason": str(refused),
            }
            hook.set_meta(name, {"review": review})
            continue
        if batch is not None:
            yield batch


def batch_to_review(
    dataset: str,
    version: str | None = None,
    prodigy_conn_id: str = ProdigyHook.default_conn_name,
    opentext_conn_id: str = OpenTextWorkflowHook.default_conn_name,
) -> BatchToReview | None:
    """``dataset`` up to ``version`` (default: its last example now), or None while it holds no answers.

    What the release would refuse fails here, before any reviewer is asked, without retries
    (:func:`~prodigy_opentext.flows._shared.governable_dataset`), and so does a version the dataset does
    not hold.
    """
    meta = governable_dataset(dataset, prodigy_conn_id, opentext_conn_id)
    hook = ProdigyHook(prodigy_conn_id)
    newest = hook.last_example_id(dataset)
    if newest is None:
        log.info("dataset %s holds no answers yet: nothing to review", dataset)
        return None
    try:
        last_id = version_last_example_id(version) if version else newest
    except ValueError as malformed:
        raise DatasetRefused(str(malformed)) from None
    if last_id > newest:
        raise DatasetRefused(
            f"dataset {dataset!r} has no version {version!r}: its last example id is {newest}"
        )
    return BatchToReview(
        dataset=dataset,
        version=Batch(dataset, last_id).version,
        last_example_id=last_id,
        regulated=is_regulated(meta),
    )


def batch_to_work_on(
    dataset: str | None, version: str | None, prodigy_conn_id: str = ProdigyHook.default_conn_name
) -> BatchToReview:
    """:func:`batch_to_review` for a flow's first task: a dataset that holds no answers yet skips the task,
    and the run's steps after it, saying so. No dataset (an empty trigger form) means the first batch
    :func:`find_ready_batches` would find, so a person can review the next ready batch without its name."""
    if not dataset:
        if version:
            raise DatasetRefused(f"version {version!r} names a batch of one dataset: give the dataset too")
        batch = next(_ready_batches(prodigy_conn_id), None)
        if batch is None:
            raise AirflowSkipException(
                'no dataset is marked ready for review (meta {"review": {"status": "ready"}}): nothing to do'
            )
        log.info("no dataset given: the next ready batch is %s@%s", batch["dataset"], batch["version"])
        return batch
    batch = batch_to_review(dataset, version or None, prodigy_conn_id)
    if batch is None:
        raise AirflowSkipException(f"dataset {dataset} holds no answers yet: nothing to do")
    return batch


def waits_for_annotators(dataset: str | None, min_answers: int, annotators_per_input: int) -> bool:
    """Whether a run waits for the annotators before it finds its batch; a wait needs a dataset to watch."""
    if not (min_answers or annotators_per_input):
        return False
    if not dataset:
        raise DatasetRefused(
            "min_answers and annotators_per_input wait on one dataset: give the dataset, or set both to 0"
        )
    return True


def approval_run(batch: BatchToReview) -> RunRequest:
    """The batch-approval run of one batch, named by dataset and version: each batch waits on its own,
    and however often a batch is found ready, it gets one run."""
    dataset, version = batch["dataset"], batch["version"]
    return RunRequest(
        trigger_dag_id="annotation_batch_approval",
        run_id=f"approval__{dataset}__{version}",
        conf={"dataset": dataset, "version": version},
        skip_reason=None,
    )


def prepare_review_package(
    batch: BatchToReview,
    review_root: Path,
    audit_path: Path,
    prodigy_conn_id: str = ProdigyHook.default_conn_name,
) -> ReviewPackage:
    """Export the batch for reviewers, compute its statistics, write its review report (attached to the
    approval process, so reviewers open it from their task), and say which process to start for it; a
    batch whose dataset asks for QA is refused until its latest QA round passed (as OpenText records it)."""
    dataset, version = batch["dataset"], batch["version"]
    require_qa(batch)
    package_dir = review_root / checked_name(dataset, "dataset") / checked_name(version, "version")
    streamed = StreamedBatch(dataset, batch["last_example_id"], package_dir, prodigy_conn_id)
    manifest = whole_export(streamed.export)
    streamed.settle()
    annotators = annotators_of(dataset, sorted(streamed.sessions), prodigy_conn_id)
    figures = streamed.review_figures(version, regulated=bool(batch["regulated"]), audit_path=audit_path)
    report = package_dir / REVIEW_REPORT_NAME
    report.write_text(review_report_html(figures))
    counts = streamed.merger.counts()
    statistics = BatchStatistics(
        examples=manifest["rows"],
        agreement=figures["agreement"],
        disputes=counts["disputes"],
        items=counts["merged"],
        counts={
            "by_answer": manifest["by_answer"],
            "by_label": manifest["by_label"],
            "by_annotator": manifest["by_annotator"],
        },
        quarantined=manifest["quarantined"],
    )
    (package_dir / "statistics.json").write_text(json.dumps(statistics, indent=2, sort_keys=True) + "\n")
    hook = ProdigyHook(prodigy_conn_id)
    hook.set_meta(
        dataset,
        {
            "review": {
                **review_state(hook.get_meta(dataset)),
                "status": ReviewStatus.REQUESTED,
                "version": version,
            }
        },
    )
    return ReviewPackage(
        **batch,
        package=str(package_dir),
        statistics=statistics,
        annotators=annotators,
        process=ProcessRequest(
            business_key=Batch(dataset, batch["last_example_id"]).business_key(BATCH_APPROVAL_PROCESS),
            process_name=f"Approve annotation batch {dataset} {version}",
            variables={
                "dataset": dataset,
                "version": version,
                "regulated": bool(batch["regulated"]),
                "answers_sha256": streamed.sha256,
                "examples": statistics["examples"],
                "agreement_method": statistics["agreement"]["method"],
                "agreement": statistics["agreement"]["value"],
                "percent_agreement": statistics["agreement"]["observed_agreement"],
                "open_disputes": statistics["disputes"],
                "annotators": ", ".join(annotators),
                "review_report": REVIEW_REPORT_NAME,
            },
            attachments={REVIEW_REPORT_NAME: str(report)},
        ),
    )


def supersede_older_reviews(
    package: ReviewPackage, opentext_conn_id: str = OpenTextWorkflowHook.default_conn_name
) -> list[str]:
    """Withdraw the dataset's open reviews of older versions: the dataset grew, so reviewers review the
    new version instead. Each older process gets a comment saying which version replaces it, then is
    cancelled (``superseded by <version>``); returns their ids."""
    hook = OpenTextWorkflowHook(opentext_conn_id)
    dataset, version = package["dataset"], package["version"]
    running = hook.find_processes(processDefinitionKey=BATCH_APPROVAL_PROCESS, includeProcessVariables=True)
    older = [
        process
        for process in running
        if (variables := from_rest_variables(process.get("variables"))).get("dataset") == dataset
        and variables.get("version") != version
    ]
    for process in older:
        hook.add_comment(
            process["id"],
            f"Superseded by {dataset} {version}: the dataset has new answers since this version, so "
            f"its review is withdrawn; review {version} instead.",
        )
        hook.cancel_process(process["id"], f"superseded by {version}")
        log.info("withdrew the review of %s (process %s): superseded by %s", dataset, process["id"], version)
    return [process["id"] for process in older]


def _approval_problem(package: ReviewPackage, opentext_conn_id: str) -> str | None:
    """Why an approval OpenText ended with does not hold by policy (the release gate's own check), or None."""
    target = ApprovedVersion(
        dataset=package["dataset"], version=package["version"], regulated=bool(package["regulated"])
    )
    try:
        read_approval(
            OpenTextWorkflowHook(opentext_conn_id),
            "batch_approval",
            target,
            annotators=package["annotators"],
            reviewed_sha256=package["process"]["variables"]["answers_sha256"],
        )
    except ApprovalRefused as refused:
        return str(refused)
    return None


def record_review_decision(
    package: ReviewPackage,
    decision: JudgedDecision,
    audit_path: Path,
    prodigy_conn_id: str = ProdigyHook.default_conn_name,
    opentext_conn_id: str = OpenTextWorkflowHook.default_conn_name,
) -> RecordedDecision:
    """Write the reviewers' decision into the dataset's meta and the audit log (idempotent on reruns).

    An approval counts as the release will count it: one whose task history does not hold by policy
    (a step decided by a non-member or by an annotator of the batch, ...) is recorded as ``refused``,
    with the reason, and starts no release.
    """
    dataset, version = package["dataset"], package["version"]
    signoff = approval_record(decision, kind="batch_approval")
    problem = _approval_problem(package, opentext_conn_id) if decision["approved"] else None
    approved = decision["approved"] and problem is None
    status = ReviewStatus.APPROVED if approved else ReviewStatus.REFUSED if problem else ReviewStatus.REWORK
    hook = ProdigyHook(prodigy_conn_id)
    current = review_state(hook.get_meta(dataset))
    if current.get("version") not in (None, version):
        record_in_audit_log(
            audit_path,
            "batch_superseded",
            f"{dataset}@{version}",
            {"signoff": signoff, "superseded_by": current["version"]},
            event_key=f"{BATCH_APPROVAL_PROCESS}:{signoff['process_instance_id']}",
        )
        log.info(
            "%s@%s was superseded by %s: its decision changes nothing", dataset, version, current["version"]
        )
        return RecordedDecision(dataset=dataset, version=version, approved=False, signoff=signoff)
    review = {**current, "status": status, "version": version, "signoff": signoff}
    if problem:
        review["reason"] = problem
        log.error("%s@%s: OpenText ended the review approved, but %s", dataset, version, problem)
    elif not approved:
        review["rework"] = {
            "version": version,
            "comments": [c["message"] for c in signoff["comments"] if c["message"]],
        }
    hook.set_meta(dataset, {"review": review})
    action = "batch_approved" if approved else "batch_approval_refused" if problem else "batch_rejected"
    details = {"signoff": signoff, "package": package["package"], **({"reason": problem} if problem else {})}
    entry = record_in_audit_log(
        audit_path,
        action,
        f"{dataset}@{version}",
        details,
        event_key=f"{BATCH_APPROVAL_PROCESS}:{signoff['process_instance_id']}",
    )
    log.info(
        "%s@%s %s by %s at %s (audit entry %s)",
        dataset,
        version,
        status,
        signoff["approver"],
        signoff["decided_at"],
        entry.entry["hash"][:12],
    )
    return RecordedDecision(dataset=dataset, version=version, approved=approved, signoff=signoff)


def release_run(recorded: RecordedDecision) -> RunRequest:
    """The release run an approved batch starts, named by dataset and version so it starts once."""
    dataset, version = recorded["dataset"], recorded["version"]
    return RunRequest(
        trigger_dag_id="dataset_release",
        run_id=f"release__{dataset}__{version}",
        conf={"dataset": dataset, "version": version},
        skip_reason=None if recorded["approved"] else f"{dataset}@{version} was not approved: no release",
    )
