"""What the steps of the flows hand each other, as typed payloads.

Payloads travel between tasks as XCom, which stores JSON, so they are ``TypedDict``\\ s: plain dicts at run
time (readable in the Airflow UI and its REST API, no deserialization allow-list to configure), checked by
the type checker in the code that builds and reads them. A payload that extends another (``ReviewPackage``
extends ``BatchToReview``) carries everything the earlier step handed on.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

# --- OpenText -------------------------------------------------------------------------------------------


class Comment(TypedDict):
    """A reviewer's comment on a process instance."""

    author: str | None
    message: str | None
    time: str | None


class Decision(TypedDict):
    """What OpenText records of a decision on a process instance (read by the decision probe).

    ``watched`` is what the decision was waited for: ``"process"`` (its end), ``"task"`` (one task's
    completion), ``"variable"`` (a process variable being set) or ``"open_task"`` (the process reaching
    a task of Airflow's own after people decided; the decision is then the last completed task's).
    """

    process_instance_id: str
    watched: str
    business_key: str | None
    outcome: Any
    ended: bool
    end_activity_id: str | None
    delete_reason: str | None
    task_definition_key: str | None
    task_id: str | None
    approver: str | None
    decided_at: str | None
    comments: list[Comment]


class JudgedDecision(Decision):
    """A decision with the verdict of :func:`prodigy_opentext.core.approvals.is_approved`."""

    approved: bool


class ProcessRequest(TypedDict):
    """How to start one OpenText process: the keyword arguments of ``OpenTextStartProcessOperator``."""

    business_key: str
    process_name: str
    variables: dict[str, Any]
    attachments: NotRequired[dict[str, str]]
    """Files attached to the process once it is started: ``{attachment name: local path}``."""


class ApprovalRecord(TypedDict):
    """The part of a decision a sign-off record, an audit entry and a release manifest keep."""

    kind: str
    process_instance_id: str | None
    business_key: str | None
    outcome: Any
    end_activity_id: str | None
    approver: str | None
    decided_at: str | None
    comments: list[Comment]


# --- Prodigy --------------------------------------------------------------------------------------------


class ExportManifest(TypedDict):
    """What an export wrote: the file, its checksum, counts, the example id range and the quarantine."""

    dataset: str
    path: str
    bytes: int
    sha256: str
    read: int
    rows: int
    by_answer: dict[str, int]
    by_label: dict[str, int]
    by_annotator: dict[str, int]
    first_example_id: int | None
    last_example_id: int | None
    quarantined: int
    quarantine_path: str | None
    filters: NotRequired[dict[str, Any]]
    format: NotRequired[str]
    manifest_path: NotRequired[str]


class RecordCounts(TypedDict):
    """Examples counted: in all, and per answer, per label (examples carrying it) and per annotator."""

    total: int
    by_answer: dict[str, int]
    by_label: dict[str, int]
    by_annotator: dict[str, int]


class BatchCounts(TypedDict):
    """How far a dataset's annotation is, as a batch target is checked against it."""

    dataset: str
    answers: int
    inputs: NotRequired[int]
    inputs_done: NotRequired[int]
    annotators: NotRequired[int]
    invalid: NotRequired[int]


class LoadedTasks(TypedDict):
    """A task stream written for Prodigy's server and the dataset its answers go to."""

    dataset: str
    dataset_created: bool
    stream_path: str
    tasks: int
    added: int
    duplicates: int


class Agreement(TypedDict):
    """Inter-annotator agreement over the items at least two annotators answered."""

    method: str | None
    value: float | None
    n_items: int
    n_annotators: int
    observed_agreement: float | None
    pairwise: dict[str, dict[str, Any]]
    span_f1: float | None
    per_label: dict[str, dict[str, Any]]


class ConsensusCounts(TypedDict):
    merged: int
    disputes: int
    resolved: int


class ServiceTaskResult(TypedDict):
    """What Airflow's own task of a process is completed with, and whether the work is done (a model
    may send the case back to people and come back to the task)."""

    variables: dict[str, Any]
    done: bool
    value: Any
    """What the operator returns when done."""


# --- Flow 2: escalation --------------------------------------------------------------------------------


class ItemVersion(TypedDict):
    """One distinct answer to an item, and the sessions that gave it."""

    version: str
    """``v1``, ``v2``, ...: most given first."""
    sessions: list[str]
    answer: Any
    spans: list[Any]
    accept: list[Any]
    task: dict[str, Any]
    """The stored example behind the version (kept by the flow, not shown to reviewers)."""


class CaseItem(TypedDict):
    """An item the annotators did not settle, as a case presents it to reviewers."""

    item: str
    input_hash: Any
    label: Any
    text: str
    reasons: list[str]
    agreement: float
    """Share of the item's answers that gave its most common version."""
    versions: list[ItemVersion]


class EscalationCase(TypedDict):
    """Up to N items of one dataset version, decided in one ``label_dispute_resolution`` process."""

    dataset: str
    version: str
    number: int
    business_key: str
    items: list[CaseItem]


class CaseOutcome(TypedDict):
    """What a decided case wrote into Prodigy."""

    business_key: str
    process_instance_id: str
    reviewer: str | None
    adjudicated: int


# --- Flow 6: QA and rework ----------------------------------------------------------------------------


class QAItem(TypedDict):
    """One sampled answer, as QA reviewers see it."""

    item: str
    """``<input hash>[:<label>]@<session>``: the item and who answered it."""
    input_hash: Any
    label: Any
    text: str
    annotator: str
    stratum: str
    """``<label>|<session>``: what the sample is stratified by."""
    answer: Any
    spans: list[Any]
    accept: list[Any]
    task: dict[str, Any]
    """The stored answer (kept by the flow, not shown to reviewers)."""


class QARound(TypedDict):
    """One QA round of a dataset version: its sample, and the rule it is judged by."""

    dataset: str
    version: str
    round: int
    max_rounds: int
    business_key: str
    population: int
    """How many current answers the batch has (the sample is drawn from them)."""
    strata: dict[str, dict[str, int]]
    max_error_rate: float
    confidence: float
    annotators: list[str]
    """The people (OpenText e-mails) who annotated the batch: none of them may judge it."""
    items: list[QAItem]


class QAJudgement(TypedDict):
    """A QA reviewer's verdict on one sampled answer."""

    item: str
    verdict: str
    reason: str | None
    comment: str


class QAFigures(TypedDict):
    """What a QA round found, as recorded on its process and in the audit log."""

    round: int
    population: int
    sampled: int
    failed: int
    error_rate: float
    upper_bound: float
    max_error_rate: float
    confidence: float
    passed: bool
    by_reason: dict[str, int]
    by_stratum: dict[str, dict[str, int]]


class QAOutcome(TypedDict):
    """How a QA round ended, read back from its process: passed, rework, or escalated to the leads."""

    dataset: str
    version: str
    round: int
    business_key: str
    process_instance_id: str
    result: str
    reviewer: str | None
    figures: QAFigures | None
    lead_decision: str | None
    """The annotation leads' outcome when every round failed (``accepted`` or ``rejected``)."""


class ReworkBatch(TypedDict):
    """A failed round's rework dataset: the answers sent back to their annotators."""

    dataset: str
    """The rework dataset, ``<dataset>_rework_<version>_r<round>``."""
    source: str
    version: str
    round: int
    stream_path: str
    tasks: int
    sessions: list[str]
    """The session names the tasks are served to (``meta.annotator``)."""


# --- Flow 4: annotation request intake --------------------------------------------------------------


class AnnotationRequest(TypedDict):
    """An approved annotation request waiting in OpenText for its dataset, as checked."""

    process_instance_id: str
    task_id: str
    """Its open ``provision_dataset`` task."""
    title: str
    source: str
    task_type: str
    labels: list[str]
    instructions: str
    priority: int
    due_date: str | None
    approvers: list[str]
    annotators: dict[str, str]
    """Prodigy session name -> e-mail, for the team that annotates."""
    annotations_per_task: int
    dataset: str


class ProvisionedDataset(TypedDict):
    """What provisioning a request created (or found from an earlier run), or why it refused."""

    process_instance_id: str
    dataset: str | None
    tasks: int
    duplicates: int
    stream_path: str | None
    refused: list[str]


# --- Flow 5: regulated content access -------------------------------------------------------------


class HeldContent(TypedDict):
    """A regulated case's content checked where it waits (never in Prodigy) before anyone grants access,
    or why it was refused."""

    process_instance_id: str
    dataset: str | None
    tasks: int
    content_sha256: str | None
    """Of the held file: what the access approval is for; loading refuses other content."""
    refused: list[str]


class ClosedCase(TypedDict):
    """A regulated case completed with its dataset's release: metadata only, never content."""

    process_instance_id: str
    dataset: str
    release_version: str
    manifest_sha256: str


# --- Flow 1: batch approval ---------------------------------------------------------------------------


class BatchToReview(TypedDict):
    """A dataset up to its last example, to be approved as version ``b<last_example_id>``."""

    dataset: str
    version: str
    last_example_id: int
    regulated: bool


class BatchStatistics(TypedDict):
    """What reviewers are shown of a batch: counts, agreement and open disputes."""

    examples: int
    agreement: Agreement
    disputes: int
    items: int
    counts: dict[str, dict[str, int]]
    quarantined: int


class ReviewPackage(BatchToReview):
    """An exported batch, its statistics and the approval process to start for it."""

    package: str
    statistics: BatchStatistics
    annotators: list[str]
    """The people (OpenText e-mails) who annotated the batch: none of them may approve it."""
    process: ProcessRequest


class RecordedDecision(TypedDict):
    """A batch's decision as recorded in the dataset's meta and the audit log."""

    dataset: str
    version: str
    approved: bool
    signoff: ApprovalRecord


class RunRequest(TypedDict):
    """A DAG run to start once, or why not: the keyword arguments of ``TriggerDagRunOnceOperator``."""

    trigger_dag_id: str
    run_id: str
    conf: dict[str, Any]
    skip_reason: str | None


# --- Flow 3: controlled release -----------------------------------------------------------------------


class ApprovedVersion(TypedDict):
    """A dataset version whose approvals are read from OpenText, and whether policy calls it regulated."""

    dataset: str
    version: str
    regulated: bool


class ReleaseTarget(ApprovedVersion):
    """A dataset version to release, with the policy facts read from the dataset itself."""

    last_example_id: int
    label_scheme: list[str]


class StagedRelease(ReleaseTarget):
    """The version exported and merged into final examples, with the disputes still open."""

    answers: str
    annotations: str
    disputes: str
    sessions: list[str]
    annotators: list[str]
    """The people (OpenText e-mails) behind ``sessions``: none of them may approve this data."""
    adjudications: list[dict[str, Any]]
    """The reviewers' decisions on items the annotators did not settle, as the manifest lists them."""
    reworked: list[dict[str, Any]]
    """The answers QA sent back and their annotators redid, as the manifest lists them."""
    consensus: ConsensusCounts
    export: dict[str, Any]
    reviewed_sha256: str
    """The answers with the adjudications and QA corrections merged in, as batch approval approved them."""
    non_finite_as_null: int
    """Rows in which NaN or Infinity was written as null (standard JSON has neither)."""
    agreement: Agreement
    licence: str | None
    """What the dataset's meta states as its licence, for the dataset card."""
    review_figures: str
    """The figures of the release sign-off's review report (JSON), written when the data was staged."""


class PublishedRelease(TypedDict):
    """A written release: where it is and how many examples it holds."""

    dataset: str
    version: str
    path: str
    manifest: str
    manifest_sha256: str
    idempotency_key: str
    """``<dataset>:<version>:<manifest sha256>``: the same for every announcement of one release."""
    already_released: bool
    examples: int


class HandOff(TypedDict):
    """MLOps' answer to the release summary."""

    status: int
    body: str


class TrainingSet(RecordCounts):
    """What a consumer loaded from a verified release."""

    path: str
