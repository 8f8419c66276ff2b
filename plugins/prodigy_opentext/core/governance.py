"""The governance report (flow 7): who labeled, reviewed, approved and released what, when, and which
consumer run used which release, built from what the flows recorded.

Plain Python (no Airflow import). The audit log is the record: every flow appends its decisions there
(``record_in_audit_log``); the release folders' manifests, the datasets' meta in Prodigy and OpenText's
task history add what the log points at. :func:`build_report` turns them into one
:class:`GovernanceReport` (JSON as it is), :func:`governance_report_html` into the page people read, and
:func:`status_records` into what is written back on the OpenText processes concerned. The Airflow UI's
Governance view renders the same report live, so both show one implementation's figures.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

from prodigy_opentext.core.approvals import BATCH_APPROVAL_PROCESS, RELEASE_SIGNOFF_PROCESS
from prodigy_opentext.core.audit import AuditVerification
from prodigy_opentext.core.batches import review_state, version_last_example_id
from prodigy_opentext.core.escalation import ESCALATION_PROCESS
from prodigy_opentext.core.export import file_digest
from prodigy_opentext.core.qa import QA_PROCESS
from prodigy_opentext.core.release import MANIFEST_NAME
from prodigy_opentext.core.report_html import (
    Html,
    bar_chart,
    escape,
    facts,
    link,
    moment,
    number,
    page,
    percent,
    section,
    table,
)
from prodigy_opentext.core.review_report import METHOD_NAMES

STYLE = (
    ".alarm{background:#fce8e6;border:2px solid #b42318;border-radius:6px;padding:.7rem 1rem}"
    "h3{margin:.2rem 0 .4rem}h4{margin:1rem 0 .3rem}.item{overflow-x:auto}"
)
"""What the governance page adds to the shared page shell: the broken chain's alarm, and wide tables that
scroll within their block."""
REPORT_HTML = "governance_report.html"
REPORT_JSON = "governance_report.json"
CONSUMER_ACTION = "release_used_for_training"
"""What a consumer records when a training run used a release (with its MLflow run)."""
LEDGER_ACTION = "release_consumed"
"""What a consumer notes in its own ledger when it loaded a release."""
WATCHED_PROCESSES = (BATCH_APPROVAL_PROCESS, RELEASE_SIGNOFF_PROCESS, ESCALATION_PROCESS, QA_PROCESS)
"""The processes whose open instances tell a version's pending approvals, escalations and QA rounds."""

KINDS = {
    "request_provisioned": "labeling",
    "request_refused": "labeling",
    "request_annotated": "labeling",
    "improvement_examples_added": "labeling",
    "improvement_delivered": "labeling",
    "regulated_content_held": "labeling",
    "regulated_case_closed": "labeling",
    "regulated_access_revoked": "labeling",
    "case_adjudicated": "escalation",
    "case_sent_back": "escalation",
    "qa_round_recorded": "qa",
    "qa_round_sent_back": "qa",
    "qa_lead_decided": "qa",
    "qa_lead_sent_back": "qa",
    "batch_approved": "approval",
    "batch_rejected": "approval",
    "batch_approval_refused": "approval",
    "batch_superseded": "approval",
    "release_written": "release",
    "release_announced": "release",
    "release_handed_off": "release",
    CONSUMER_ACTION: "consumer",
    LEDGER_ACTION: "consumer",
}
"""Each recorded action's place in the timeline; an action not listed is shown as ``other``."""
KIND_TITLES = {
    "labeling": "labeling",
    "escalation": "escalations",
    "qa": "QA rounds",
    "approval": "approvals",
    "release": "releases",
    "consumer": "consumer runs",
    "other": "other",
}
BATCH_OUTCOMES = {
    "batch_approved": "approved",
    "batch_rejected": "rejected",
    "batch_approval_refused": "refused",
    "batch_superseded": "superseded",
}
"""How a batch approval ended, by the action its decision was recorded with."""
REQUEST_PROCESSES = {
    "request_provisioned": "annotation request",
    "improvement_examples_added": "improvement request",
    "regulated_content_held": "regulated content case",
}
"""The entries naming the request process a dataset was made (or fed) for."""


# --- what the report holds ---------------------------------------------------------------------------


class ChainStatus(TypedDict):
    """The audit log's check (:func:`~prodigy_opentext.core.audit.verify_audit_log` and its anchor)."""

    log: str
    valid: bool
    entries: int
    broken_line: int | None
    reason: str | None
    anchored: bool
    summary: str


class TaskStep(TypedDict):
    """One finished task of an approval process, as OpenText's task history has it."""

    task_id: str
    name: str | None
    assignee: str | None
    completed_at: str | None


class ApprovalView(TypedDict):
    """One approval decision on a dataset version, as the audit log recorded it."""

    kind: str
    outcome: str
    approver: str | None
    decided_at: str | None
    process_instance_id: str | None
    business_key: str | None
    task_id: str | None
    """The task that decided, when OpenText's history names it."""
    steps: list[TaskStep]
    comments: list[str]
    audit_seq: int


class ConsumerRun(TypedDict):
    """A consumer's use of a release: the training run that used it, or its ledger's note."""

    dataset: str
    version: str
    consumer: str
    manifest_sha256: str | None
    matches_release: bool | None
    """Whether it used the manifest the release holds now (None: it did not say which)."""
    mlflow_run_id: str | None
    mlflow_experiment_id: str | None
    mlflow_run_url: str | None
    at: str
    source: str


class ReleaseView(TypedDict):
    """One written release: its manifest's figures, checked against the audit log."""

    dataset: str
    version: str
    release_id: str
    path: str
    manifest_sha256: str
    recorded_sha256: str | None
    """The manifest sha256 the release's audit entry holds (None: no entry)."""
    manifest_matches_log: bool
    card_file: str | None
    card_sha256: str | None
    card_intact: bool | None
    examples: int
    by_label: dict[str, int]
    by_answer: dict[str, int]
    by_annotator: dict[str, int]
    agreement: dict[str, Any] | None
    validation_success: bool | None
    regulated: bool
    licence: str | None
    created: str | None
    announced_at: str | None
    handed_off: int | None
    """The MLOps hand-off's HTTP status, when one was made."""
    approvals: list[ApprovalView]
    consumers: list[ConsumerRun]


class QARoundView(TypedDict):
    round: int | None
    outcome: str
    reviewer: str | None
    process_instance_id: str | None
    error_rate: float | None
    sampled: int | None
    failed: int | None
    at: str


class EscalationView(TypedDict):
    outcome: str
    reviewer: str | None
    process_instance_id: str | None
    adjudicated: int | None
    at: str


class VersionView(TypedDict):
    """Everything recorded for one dataset version."""

    version: str
    status: str
    """``released``, ``approved``, ``rejected``, ``refused``, ``superseded`` or ``in review``."""
    review: str | None
    qa: str | None
    escalation: str | None
    approvals: list[ApprovalView]
    qa_rounds: list[QARoundView]
    escalations: list[EscalationView]
    open_processes: list[str]
    release: ReleaseView | None


class RequestView(TypedDict):
    kind: str
    process_instance_id: str
    title: str | None
    at: str


class DatasetView(TypedDict):
    name: str
    in_prodigy: bool
    regulated: bool
    review_status: str | None
    review_version: str | None
    review_reason: str | None
    qa_required: bool
    versions: list[VersionView]
    requests: list[RequestView]


class TimelineEvent(TypedDict):
    at: str
    kind: str
    action: str
    dataset: str | None
    version: str | None
    summary: str
    process_instance_id: str | None
    seq: int | None
    source: str


class GovernanceReport(TypedDict):
    generated_at: str
    chain: ChainStatus
    datasets: list[DatasetView]
    releases: list[ReleaseView]
    consumer_runs: list[ConsumerRun]
    timeline: list[TimelineEvent]
    problems: list[str]


class ReleaseFiles(TypedDict):
    """A release folder as read from disk: its manifest, the manifest's sha256 and its card's."""

    path: str
    manifest: dict[str, Any]
    manifest_sha256: str
    card_sha256: str | None
    """The sha256 of the card file on disk (None: no card file)."""


class OpenProcess(TypedDict):
    """A running OpenText process of :data:`WATCHED_PROCESSES`, with the dataset version it is for."""

    process_key: str
    process_instance_id: str
    dataset: str | None
    version: str | None
    name: str | None


class StatusRecord(TypedDict):
    """What the report writes back on one OpenText process: variables, or a comment once it has ended."""

    process_instance_id: str
    dataset: str
    variables: dict[str, str]
    comment: str


# --- building it ---------------------------------------------------------------------------------------


def subject_of(entry: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The dataset and version an entry is about: ``<dataset>@<version>``, or a dataset alone (requests);
    a request refused before it had a dataset names its process only."""
    subject = str(entry.get("subject") or "")
    if entry.get("action") == "request_refused":
        return None, None
    dataset, _, version = subject.partition("@")
    return (dataset or None), (version or None)


def _details(entry: Mapping[str, Any]) -> dict[str, Any]:
    details = entry.get("details")
    return dict(details) if isinstance(details, Mapping) else {}


def read_entries(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every entry of a JSON-lines log that still reads as one; a line that does not is left out here
    and named by the chain check (:func:`~prodigy_opentext.core.audit.verify_audit_log`)."""
    entries = []
    if Path(path).exists():
        for line in Path(path).read_bytes().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
    return entries


def read_releases(root: str | os.PathLike) -> list[ReleaseFiles]:
    """Every release folder under ``<root>/releases/``: its manifest, the manifest's sha256 and its
    card's (the data files are checked by consumers, :func:`~prodigy_opentext.core.release.verify_release`;
    a report reads only these small files). A folder whose manifest does not read is left out."""
    found = []
    for manifest_path in sorted(Path(root).glob(f"releases/*/*/{MANIFEST_NAME}")):
        content = manifest_path.read_bytes()
        try:
            manifest = json.loads(content)
        except ValueError:
            continue
        card_name = (manifest.get("dataset_card") or {}).get("file")
        card = manifest_path.parent / str(card_name) if card_name else None
        found.append(
            ReleaseFiles(
                path=str(manifest_path.parent),
                manifest=manifest,
                manifest_sha256=hashlib.sha256(content).hexdigest(),
                card_sha256=file_digest(card).sha256 if card is not None and card.is_file() else None,
            )
        )
    return found


def release_id(dataset: str, version: str, manifest_sha256: str) -> str:
    """A release's id: the idempotency key its announcement and hand-off carry."""
    return f"{dataset}:{version}:{manifest_sha256}"


def _version_order(version: str) -> tuple[int, str]:
    try:
        return version_last_example_id(version), version
    except ValueError:
        return -1, version


def _approval(
    entry: Mapping[str, Any], record: Mapping[str, Any], outcome: str, history: Mapping[str, list[TaskStep]]
) -> ApprovalView:
    pid = record.get("process_instance_id")
    steps = list(history.get(str(pid), [])) if pid else []
    deciding = [s for s in steps if s["assignee"] and s["assignee"] == record.get("approver")]
    task_id = record.get("task_id") or (deciding[-1]["task_id"] if deciding else None)
    return ApprovalView(
        kind=str(record.get("kind") or "approval"),
        outcome=outcome,
        approver=record.get("approver"),
        decided_at=record.get("decided_at"),
        process_instance_id=pid,
        business_key=record.get("business_key"),
        task_id=task_id,
        steps=steps,
        comments=[str(c.get("message")) for c in record.get("comments") or () if c.get("message")],
        audit_seq=int(entry.get("seq") or 0),
    )


def _summary(entry: Mapping[str, Any]) -> str:
    """One sentence saying what an entry records, for the timeline."""
    action, details = str(entry.get("action")), _details(entry)
    signoff = details.get("signoff") or {}
    by = details.get("reviewer") or signoff.get("approver")
    if action in BATCH_OUTCOMES:
        why = f": {details['reason']}" if details.get("reason") else ""
        later = f" by {details['superseded_by']}" if details.get("superseded_by") else ""
        return f"batch {BATCH_OUTCOMES[action]}{later} by {by or 'nobody named'}{why}"
    if action == "release_written":
        approvers = ", ".join(str(a.get("approver")) for a in details.get("approvals") or ())
        sha256 = str(details.get("manifest_sha256"))[:12]
        return f"release written (manifest sha256 {sha256}…), approved by {approvers}"
    if action == "release_announced":
        return "release announced on the annotation_releases asset"
    if action == "release_handed_off":
        return f"release handed off to MLOps (HTTP {details.get('status')})"
    if action == "case_adjudicated":
        return f"escalation case decided by {by}: {details.get('adjudicated')} item(s) adjudicated"
    if action in ("case_sent_back", "qa_round_sent_back", "qa_lead_sent_back"):
        return f"sent back to {by}: " + "; ".join(map(str, details.get("problems") or ()))
    if action == "qa_round_recorded":
        figures = details.get("figures") or {}
        return (
            f"QA round {details.get('round')} judged by {by}: {figures.get('failed')} of "
            f"{figures.get('sampled')} sampled answers failed, {details.get('result')}"
        )
    if action == "qa_lead_decided":
        return f"annotation lead {by} {details.get('outcome')} the batch after QA"
    if action in (CONSUMER_ACTION, LEDGER_ACTION):
        mlflow = details.get("mlflow") or {}
        run = f" in MLflow run {mlflow['run_id']}" if mlflow.get("run_id") else ""
        return f"used by {details.get('consumer') or entry.get('actor')}{run}"
    if action == "request_provisioned":
        return (
            f"request {details.get('title')!r}: {details.get('tasks')} task(s) for {details.get('sessions')}"
        )
    if action == "request_annotated":
        return f"annotation done: {details.get('answers')} answers, batch {details.get('version')} to review"
    if action == "improvement_examples_added":
        return f"improvement request: {details.get('tasks')} example(s) added"
    if action == "improvement_delivered":
        return f"improvement request closed with release {details.get('release_version')}"
    if action == "regulated_content_held":
        return f"{details.get('tasks')} regulated task(s) held until access is granted"
    if action == "regulated_case_closed":
        return "regulated content case closed"
    if action == "regulated_access_revoked":
        return f"regulated access revoked: {details.get('reason')}"
    if action == "request_refused":
        return "request refused: " + "; ".join(map(str, details.get("problems") or ()))
    return action.replace("_", " ")


def _event(entry: Mapping[str, Any], source: str) -> TimelineEvent:
    dataset, version = subject_of(entry)
    details = _details(entry)
    pid = details.get("process_instance_id") or (details.get("signoff") or {}).get("process_instance_id")
    if entry.get("action") == "request_refused":
        pid = pid or entry.get("subject")
    return TimelineEvent(
        at=str(entry.get("ts") or ""),
        kind=KINDS.get(str(entry.get("action")), "other"),
        action=str(entry.get("action")),
        dataset=dataset,
        version=version,
        summary=_summary(entry),
        process_instance_id=str(pid) if pid else None,
        seq=entry.get("seq"),
        source=source,
    )


def _consumer_run(
    entry: Mapping[str, Any], source: str, released: Mapping[tuple[str, str], ReleaseFiles]
) -> ConsumerRun | None:
    dataset, version = subject_of(entry)
    if not dataset or not version:
        return None
    details = _details(entry)
    mlflow: Mapping[str, Any] = details["mlflow"] if isinstance(details.get("mlflow"), Mapping) else {}
    sha256 = details.get("manifest_sha256")
    if sha256 is None and isinstance(details.get("idempotency_key"), str):
        sha256 = details["idempotency_key"].rpartition(":")[2] or None
    files = released.get((dataset, version))
    return ConsumerRun(
        dataset=dataset,
        version=version,
        consumer=str(details.get("consumer") or entry.get("actor")),
        manifest_sha256=sha256,
        matches_release=None if sha256 is None or files is None else sha256 == files["manifest_sha256"],
        mlflow_run_id=mlflow.get("run_id"),
        mlflow_experiment_id=mlflow.get("experiment_id"),
        mlflow_run_url=mlflow.get("run_url"),
        at=str(entry.get("ts") or ""),
        source=source,
    )


def _release(
    files: ReleaseFiles,
    entries: Sequence[Mapping[str, Any]],
    approvals: list[ApprovalView],
    consumers: list[ConsumerRun],
) -> ReleaseView:
    manifest = files["manifest"]
    dataset, version = str(manifest.get("dataset")), str(manifest.get("version"))
    by_action = {str(e.get("action")): _details(e) | {"ts": e.get("ts")} for e in entries}
    written = by_action.get("release_written")
    recorded = written.get("manifest_sha256") if written else None
    counts, card = manifest.get("counts") or {}, manifest.get("dataset_card") or {}
    handed = by_action.get("release_handed_off")
    return ReleaseView(
        dataset=dataset,
        version=version,
        release_id=release_id(dataset, version, files["manifest_sha256"]),
        path=files["path"],
        manifest_sha256=files["manifest_sha256"],
        recorded_sha256=recorded,
        manifest_matches_log=recorded == files["manifest_sha256"],
        card_file=card.get("file"),
        card_sha256=card.get("sha256"),
        card_intact=None if not card else files["card_sha256"] == card.get("sha256"),
        examples=int(counts.get("examples") or 0),
        by_label=dict(manifest.get("label_distribution") or {}),
        by_answer=dict(counts.get("by_answer") or {}),
        by_annotator=dict(counts.get("by_annotator") or {}),
        agreement=manifest.get("agreement"),
        validation_success=(manifest.get("validation") or {}).get("success"),
        regulated=bool(manifest.get("regulated")),
        licence=manifest.get("licence"),
        created=manifest.get("created"),
        announced_at=(by_action.get("release_announced") or {}).get("ts"),
        handed_off=handed.get("status") if handed else None,
        approvals=approvals,
        consumers=consumers,
    )


def _qa_round(entry: Mapping[str, Any]) -> QARoundView:
    details = _details(entry)
    figures = details.get("figures") or {}
    action = str(entry.get("action"))
    outcome = {
        "qa_round_recorded": str(details.get("result")),
        "qa_lead_decided": f"lead {details.get('outcome')}",
    }.get(action, "sent back")
    return QARoundView(
        round=details.get("round"),
        outcome=outcome,
        reviewer=details.get("reviewer"),
        process_instance_id=details.get("process_instance_id"),
        error_rate=figures.get("error_rate"),
        sampled=figures.get("sampled"),
        failed=figures.get("failed"),
        at=str(entry.get("ts") or ""),
    )


def _escalation(entry: Mapping[str, Any]) -> EscalationView:
    details = _details(entry)
    adjudicated = entry.get("action") == "case_adjudicated"
    return EscalationView(
        outcome="adjudicated" if adjudicated else "sent back",
        reviewer=details.get("reviewer"),
        process_instance_id=details.get("process_instance_id"),
        adjudicated=details.get("adjudicated") if adjudicated else None,
        at=str(entry.get("ts") or ""),
    )


def _version_status(release: ReleaseView | None, batch: list[ApprovalView], review: str | None) -> str:
    if release is not None:
        return "released"
    if batch:
        return batch[-1]["outcome"]
    return review or "in review"


def _qa_status(rounds: list[QARoundView], required: bool, open_qa: bool) -> str | None:
    decided = [r for r in rounds if r["outcome"] != "sent back"]
    if open_qa:
        return f"round {decided[-1]['round'] + 1 if decided and decided[-1]['round'] else 1} open"
    if decided:
        latest = decided[-1]
        return (
            latest["outcome"]
            if latest["outcome"].startswith("lead")
            else f"round {latest['round']}: {latest['outcome']}"
        )
    return "required, no round yet" if required else None


def _escalation_status(cases: list[EscalationView], open_cases: int) -> str | None:
    decided = sum(1 for case in cases if case["outcome"] == "adjudicated")
    if not decided and not open_cases:
        return None
    parts = [f"{decided} case(s) decided"] + ([f"{open_cases} open"] if open_cases else [])
    return ", ".join(parts)


def build_report(
    entries: Sequence[Mapping[str, Any]],
    chain: ChainStatus,
    releases: Iterable[ReleaseFiles],
    *,
    metas: Mapping[str, Mapping[str, Any]] = {},
    ledgers: Mapping[str, Sequence[Mapping[str, Any]]] = {},
    history: Mapping[str, list[TaskStep]] = {},
    open_processes: Iterable[OpenProcess] = (),
    generated_at: str | None = None,
) -> GovernanceReport:
    """The report from the audit log's ``entries`` and its ``chain`` check, the release folders, the
    datasets' Prodigy meta, consumers' ``ledgers`` (``{ledger path: entries}``), OpenText's task
    ``history`` of the approval processes (``{process id: finished tasks}``) and its running
    ``open_processes``. A dataset shows when something was recorded for it or its meta holds a review
    state (its adjudication, rework and session datasets do not)."""
    released = {(str(r["manifest"].get("dataset")), str(r["manifest"].get("version"))): r for r in releases}
    by_version: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    requests: dict[str, list[RequestView]] = {}
    for entry in entries:
        dataset, version = subject_of(entry)
        if dataset and version:
            by_version.setdefault((dataset, version), []).append(entry)
        details = _details(entry)
        if dataset and entry.get("action") in REQUEST_PROCESSES and details.get("process_instance_id"):
            requests.setdefault(dataset, []).append(
                RequestView(
                    kind=REQUEST_PROCESSES[str(entry["action"])],
                    process_instance_id=str(details["process_instance_id"]),
                    title=details.get("title"),
                    at=str(entry.get("ts") or ""),
                )
            )
    consumer_runs = [
        run
        for entry in entries
        if entry.get("action") == CONSUMER_ACTION
        and (run := _consumer_run(entry, "audit log", released)) is not None
    ]
    used = {(r["consumer"], r["dataset"], r["version"], r["manifest_sha256"]) for r in consumer_runs}
    for path, ledger in ledgers.items():
        for entry in ledger:
            run = (
                _consumer_run(entry, f"ledger {path}", released)
                if entry.get("action") == LEDGER_ACTION
                else None
            )
            if (
                run is not None
                and (run["consumer"], run["dataset"], run["version"], run["manifest_sha256"]) not in used
            ):
                consumer_runs.append(run)
    consumer_runs.sort(key=lambda r: r["at"])
    pending: dict[tuple[str, str], list[OpenProcess]] = {}
    for process in open_processes:
        if process["dataset"] and process["version"]:
            pending.setdefault((process["dataset"], process["version"]), []).append(process)

    reviewed = {name for name, meta in metas.items() if review_state(meta)}
    names = sorted({d for d, _ in [*by_version, *released, *pending]} | set(requests) | reviewed)
    datasets, all_releases, problems = [], [], []
    for name in names:
        meta = metas.get(name) or {}
        review = review_state(meta)
        versions = sorted(
            {v for d, v in [*by_version, *released, *pending] if d == name}, key=_version_order, reverse=True
        )
        views = []
        for version in versions:
            recorded = by_version.get((name, version), [])
            batch = [
                _approval(e, _details(e).get("signoff") or {}, BATCH_OUTCOMES[str(e["action"])], history)
                for e in recorded
                if e.get("action") in BATCH_OUTCOMES
            ]
            written = [e for e in recorded if e.get("action") == "release_written"]
            signoffs = [
                _approval(e, a, "approved", history)
                for e in written[-1:]
                for a in _details(e).get("approvals") or ()
                if a.get("kind") != "batch_approval"
            ]
            approvals = sorted([*batch, *signoffs], key=lambda a: a["audit_seq"])
            files = released.get((name, version))
            release = None
            if files is not None:
                used_by = [r for r in consumer_runs if (r["dataset"], r["version"]) == (name, version)]
                release = _release(files, recorded, approvals, used_by)
                all_releases.append(release)
                problems += _release_problems(release)
            elif written:
                problems.append(
                    f"{name}@{version}: the audit log records a release at "
                    f"{_details(written[-1]).get('path')}, but no release folder holds it"
                )
            waiting = pending.get((name, version), [])
            rounds = [_qa_round(e) for e in recorded if KINDS.get(str(e.get("action"))) == "qa"]
            cases = [_escalation(e) for e in recorded if KINDS.get(str(e.get("action"))) == "escalation"]
            review_here = review.get("status") if review.get("version") == version else None
            views.append(
                VersionView(
                    version=version,
                    status=_version_status(
                        release, [a for a in batch if a["outcome"] != "superseded"], review_here
                    ),
                    review=review_here or (batch[-1]["outcome"] if batch else None),
                    qa=_qa_status(
                        rounds, "qa_review" in meta, any(p["process_key"] == QA_PROCESS for p in waiting)
                    ),
                    escalation=_escalation_status(
                        cases, sum(1 for p in waiting if p["process_key"] == ESCALATION_PROCESS)
                    ),
                    approvals=approvals,
                    qa_rounds=rounds,
                    escalations=cases,
                    open_processes=[f"{p['process_key']} {p['process_instance_id']}" for p in waiting],
                    release=release,
                )
            )
        datasets.append(
            DatasetView(
                name=name,
                in_prodigy=name in metas,
                regulated=bool(meta.get("regulated"))
                or any(v["release"] and v["release"]["regulated"] for v in views),
                review_status=review.get("status"),
                review_version=review.get("version"),
                review_reason=review.get("reason"),
                qa_required="qa_review" in meta,
                versions=views,
                requests=requests.get(name, []),
            )
        )
    if not chain["valid"]:
        problems.insert(0, f"audit log {chain['log']}: {chain['summary']}")
    timeline = [_event(e, "audit log") for e in entries]
    timeline += [
        _event(e, f"ledger {path}")
        for path, ledger in ledgers.items()
        for e in ledger
        if e.get("action") == LEDGER_ACTION
    ]
    timeline.sort(key=lambda event: (event["at"], event["source"] != "audit log", event["seq"] or 0))
    return GovernanceReport(
        generated_at=generated_at or datetime.now(UTC).isoformat(timespec="seconds"),
        chain=chain,
        datasets=datasets,
        releases=sorted(all_releases, key=lambda r: (r["dataset"], _version_order(r["version"]))),
        consumer_runs=consumer_runs,
        timeline=timeline,
        problems=problems,
    )


def _release_problems(release: ReleaseView) -> list[str]:
    where = f"release {release['dataset']}@{release['version']} ({release['path']})"
    problems = []
    if release["recorded_sha256"] is None:
        problems.append(f"{where}: the audit log records no release_written entry for it")
    elif not release["manifest_matches_log"]:
        problems.append(
            f"{where}: manifest.json has sha256 {release['manifest_sha256']}, the audit log recorded "
            f"{release['recorded_sha256']}: the manifest was changed after the release was written"
        )
    if release["card_intact"] is False:
        problems.append(f"{where}: {release['card_file']} does not match the sha256 its manifest records")
    problems += [
        f"{where}: {run['consumer']} used manifest sha256 {run['manifest_sha256']}, not this release's"
        for run in release["consumers"]
        if run["matches_release"] is False
    ]
    return problems


def chain_status(
    log: str, verification: AuditVerification, *, anchored: bool, verdict: tuple[int, str]
) -> ChainStatus:
    """The report's view of a chain check and of the verdict of ``python -m prodigy_opentext.audit
    verify`` (its exit code and report): the log counts as intact only where the command says so, so a
    log with entries but no anchored head is not."""
    code, summary = verdict
    return ChainStatus(
        log=log,
        valid=code == 0 and verification.valid,
        entries=verification.entries,
        broken_line=verification.broken_line,
        reason=verification.reason,
        anchored=anchored,
        summary=summary,
    )


def approval_processes(entries: Iterable[Mapping[str, Any]]) -> list[str]:
    """The OpenText processes of the approvals the log records (batch approvals and release sign-offs):
    whose task history the report links to."""
    found: dict[str, None] = {}
    for entry in entries:
        details = _details(entry)
        records = [details.get("signoff") or {}, *(details.get("approvals") or ())]
        for record in records:
            if isinstance(record, Mapping) and record.get("process_instance_id"):
                found[str(record["process_instance_id"])] = None
    return list(found)


# --- what goes back to OpenText ------------------------------------------------------------------------


def status_records(report: GovernanceReport) -> list[StatusRecord]:
    """The governance status of each process the report's versions came through: the batch approval and
    release sign-off of each version, and each request process of a dataset (with its latest release).
    Only what the report states, so a rerun writes the same values and the same comment."""
    records: dict[str, StatusRecord] = {}
    for dataset in report["datasets"]:
        latest = next((v for v in dataset["versions"] if v["release"] is not None), None)
        for version in dataset["versions"]:
            for approval in version["approvals"]:
                pid = approval["process_instance_id"]
                if pid and pid not in records:
                    records[pid] = _status(pid, dataset["name"], version)
        if latest is None:
            continue
        for request in dataset["requests"]:
            records.setdefault(
                request["process_instance_id"],
                _status(request["process_instance_id"], dataset["name"], latest),
            )
    return list(records.values())


def _status(pid: str, dataset: str, version: VersionView) -> StatusRecord:
    release = version["release"]
    variables = {
        "governance_status": version["status"],
        "dataset_version": f"{dataset}@{version['version']}",
        "release_id": release["release_id"] if release else "",
        "manifest_sha256": release["manifest_sha256"] if release else "",
    }
    comment = f"Governance: {dataset}@{version['version']} is {version['status']}"
    if release:
        comment += f"; release id {release['release_id']}, manifest sha256 {release['manifest_sha256']}"
    return StatusRecord(process_instance_id=pid, dataset=dataset, variables=variables, comment=comment + ".")


# --- the page ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Links:
    """Where the page's links lead: the OpenText inbox's history pages, and each release's dataset card
    (a file beside the report, or the Governance view's own route)."""

    inbox_url: str | None
    card: Callable[[ReleaseView], str]

    def process(self, pid: str | None) -> str | None:
        return f"{self.inbox_url.rstrip('/')}/processes/{pid}" if self.inbox_url and pid else None

    def task(self, task_id: str | None) -> str | None:
        return f"{self.inbox_url.rstrip('/')}/tasks/{task_id}" if self.inbox_url and task_id else None


def _linked(href: str | None, text: str | None) -> Html | str:
    return link(href, text or "") if href and text else (text or "")


def _chain_section(chain: ChainStatus) -> str:
    if chain["valid"]:
        verdict = (
            '<p id="audit-chain" class="ok" data-valid="true"><b>Audit chain intact.</b> '
            f"{escape(chain['summary'])}</p>"
        )
    else:
        where = f" at line {chain['broken_line']}" if chain["broken_line"] else ""
        verdict = (
            '<p id="audit-chain" class="bad alarm" data-valid="false">'
            f"<b>AUDIT CHAIN BROKEN{escape(where)}.</b> "
            f"{escape(chain['summary'])} Nothing in this report can be trusted until the log is restored "
            f"(python -m prodigy_opentext.audit verify {escape(chain['log'])}).</p>"
        )
    return section(
        "Audit log",
        verdict,
        facts(
            {
                "entries checked": number(chain["entries"]),
                "head anchored": "yes" if chain["anchored"] else "no",
                "chain": "intact" if chain["valid"] else "broken",
            }
        ),
        table(["", ""], [["log", chain["log"]]]),
    )


def _approval_rows(approvals: Iterable[ApprovalView], links: Links) -> list[list[Any]]:
    rows = []
    for a in approvals:
        steps = Html(
            "<br>".join(
                f"{_linked(links.task(s['task_id']), s['name'] or s['task_id'])} "
                f"({escape(s['assignee'])}, {escape(moment(s['completed_at']))})"
                if links.task(s["task_id"])
                else escape(f"{s['name']} ({s['assignee']})")
                for s in a["steps"]
            )
        )
        rows.append(
            [
                a["kind"].replace("_", " "),
                a["outcome"],
                a["approver"],
                moment(a["decided_at"]),
                _linked(links.process(a["process_instance_id"]), a["process_instance_id"]),
                _linked(links.task(a["task_id"]), a["task_id"]),
                steps,
                "; ".join(a["comments"]),
            ]
        )
    return rows


APPROVAL_HEADERS = [
    "step",
    "outcome",
    "by",
    "decided",
    "OpenText process",
    "deciding task",
    "task history",
    "comments",
]


def _release_block(release: ReleaseView, links: Links) -> str:
    key = f"{release['dataset']}-{release['version']}"
    agreement = release["agreement"] or {}
    card = (
        link(links.card(release), f"dataset card ({release['card_file']})")
        if release["card_file"]
        else Html('<span class="muted">no dataset card</span>')
    )
    intact = {True: "matches the manifest", False: "DOES NOT match the manifest", None: "not recorded"}
    return (
        f'<div class="item release" id="release-{escape(key)}" data-dataset="{escape(release["dataset"])}" '
        f'data-version="{escape(release["version"])}">'
        f"<h3>{escape(release['dataset'])} {escape(release['version'])}</h3>"
        + facts(
            {
                "examples": number(release["examples"]),
                METHOD_NAMES.get(agreement.get("method"), str(agreement.get("method"))): number(
                    agreement.get("value")
                ),
                "percent agreement": percent(agreement.get("observed_agreement")),
                "validation": {True: "passed", False: "failed", None: "not run"}[
                    release["validation_success"]
                ],
                "consumer runs": number(len(release["consumers"])),
            }
        )
        + table(
            ["", ""],
            [
                ["release id", release["release_id"]],
                ["manifest sha256", release["manifest_sha256"]],
                ["as the audit log recorded it", "yes" if release["manifest_matches_log"] else "NO"],
                ["dataset card", card],
                ["card sha256", f"{release['card_sha256'] or ''} ({intact[release['card_intact']]})"],
                ["regulated", "yes" if release["regulated"] else "no"],
                ["licence", release["licence"] or "not stated"],
                ["written", moment(release["created"])],
                ["announced", moment(release["announced_at"])],
                ["MLOps hand-off", f"HTTP {release['handed_off']}" if release["handed_off"] else "none"],
                ["folder", release["path"]],
            ],
        )
        + bar_chart("Examples per label", release["by_label"], chart_id=f"labels-{key}")
        + bar_chart("Answers per annotator", release["by_annotator"], chart_id=f"annotators-{key}")
        + "<h4>Approvals</h4>"
        + table(APPROVAL_HEADERS, _approval_rows(release["approvals"], links))
        + "<h4>Used by</h4>"
        + _consumer_table(release["consumers"])
        + "</div>"
    )


def _consumer_table(runs: Sequence[ConsumerRun]) -> str:
    if not runs:
        return '<p class="muted">No consumer has recorded using this release.</p>'
    rows = [
        [
            r["consumer"],
            f"{r['dataset']} {r['version']}",
            _linked(r["mlflow_run_url"], r["mlflow_run_id"]) if r["mlflow_run_id"] else "no MLflow run",
            r["mlflow_experiment_id"],
            {True: "yes", False: "NO", None: "not stated"}[r["matches_release"]],
            moment(r["at"]),
            r["source"],
        ]
        for r in runs
    ]
    return table(
        ["consumer", "release", "MLflow run", "experiment", "this manifest", "when", "recorded in"], rows
    )


def _dataset_section(dataset: DatasetView, links: Links) -> str:
    rows = [
        [
            v["version"],
            v["status"],
            v["review"],
            v["escalation"] or "none",
            v["qa"] or "not required",
            ", ".join(
                f"{a['kind'].replace('_', ' ')}: {a['outcome']} by {a['approver']}" for a in v["approvals"]
            )
            or "none",
            (
                link(links.card(v["release"]), "dataset card")
                if v["release"] and v["release"]["card_file"]
                else ""
            )
            if v["release"]
            else "not released",
            ", ".join(v["open_processes"]),
        ]
        for v in dataset["versions"]
    ]
    review = dataset["review_status"] or "not reviewed"
    if dataset["review_version"]:
        review += f" ({dataset['review_version']})"
    requests = [
        [
            r["kind"],
            _linked(links.process(r["process_instance_id"]), r["process_instance_id"]),
            r["title"],
            moment(r["at"]),
        ]
        for r in dataset["requests"]
    ]
    details = []
    for v in dataset["versions"]:
        if v["qa_rounds"]:
            details.append(
                f"<h4>QA rounds of {escape(v['version'])}</h4>"
                + table(
                    [
                        "round",
                        "outcome",
                        "reviewer",
                        "sampled",
                        "failed",
                        "error rate",
                        "OpenText process",
                        "when",
                    ],
                    [
                        [
                            number(r["round"]),
                            r["outcome"],
                            r["reviewer"],
                            number(r["sampled"]),
                            number(r["failed"]),
                            percent(r["error_rate"]),
                            _linked(links.process(r["process_instance_id"]), r["process_instance_id"]),
                            moment(r["at"]),
                        ]
                        for r in v["qa_rounds"]
                    ],
                    numeric=[0, 3, 4, 5],
                )
            )
        if v["escalations"]:
            details.append(
                f"<h4>Escalations of {escape(v['version'])}</h4>"
                + table(
                    ["outcome", "reviewer", "items adjudicated", "OpenText process", "when"],
                    [
                        [
                            e["outcome"],
                            e["reviewer"],
                            number(e["adjudicated"]),
                            _linked(links.process(e["process_instance_id"]), e["process_instance_id"]),
                            moment(e["at"]),
                        ]
                        for e in v["escalations"]
                    ],
                    numeric=[2],
                )
            )
    return (
        f'<div class="item dataset" id="dataset-{escape(dataset["name"])}">'
        f"<h3>{escape(dataset['name'])}</h3>"
        + facts(
            {
                "review": review,
                "versions": number(len(dataset["versions"])),
                "regulated": "yes" if dataset["regulated"] else "no",
                "QA": "required" if dataset["qa_required"] else "not required",
            }
        )
        + (
            f'<p class="muted">Reason: {escape(dataset["review_reason"])}</p>'
            if dataset["review_reason"]
            else ""
        )
        + ("" if dataset["in_prodigy"] else '<p class="muted">Not (any more) in Prodigy.</p>')
        + table(
            ["version", "status", "review", "escalation", "QA", "approvals", "release", "open in OpenText"],
            rows,
        )
        + (table(["request", "OpenText process", "title", "when"], requests) if requests else "")
        + "".join(details)
        + "</div>"
    )


def _recorded_as(event: TimelineEvent, chain: ChainStatus) -> str:
    """Where an event is recorded; an audit entry from the broken line on is marked unverified."""
    if event["source"] != "audit log":
        return event["source"]
    broken = chain["broken_line"]
    unverified = not chain["valid"] and (broken is None or (event["seq"] or 0) >= broken)
    return f"entry {event['seq']}" + (" (NOT verified)" if unverified else "")


def _timeline_section(timeline: Sequence[TimelineEvent], chain: ChainStatus, links: Links) -> str:
    counts = {title: sum(1 for e in timeline if e["kind"] == kind) for kind, title in KIND_TITLES.items()}
    rows = [
        [
            moment(e["at"]),
            KIND_TITLES.get(e["kind"], e["kind"]),
            f"{e['dataset'] or ''} {e['version'] or ''}".strip(),
            e["summary"],
            _linked(links.process(e["process_instance_id"]), e["process_instance_id"]),
            _recorded_as(e, chain),
        ]
        for e in timeline
    ]
    return section(
        "Timeline",
        bar_chart(
            "Recorded events by kind", {k: v for k, v in counts.items() if v}, chart_id="events-by-kind"
        ),
        table(["when", "what", "dataset version", "event", "OpenText process", "recorded as"], rows),
    )


def governance_report_html(report: GovernanceReport, links: Links) -> str:
    """The report as a page: the audit chain first (loudly when broken), problems, releases with their
    approvals, cards and consumers, every dataset's versions, and the timeline."""
    chain = report["chain"]
    releases = report["releases"]
    problems = (
        section(
            "Problems",
            '<ul id="problems">'
            + "".join(f'<li class="bad">{escape(p)}</li>' for p in report["problems"])
            + "</ul>",
        )
        if report["problems"]
        else ""
    )
    return page(
        "Annotation governance report",
        [
            _chain_section(chain),
            problems,
            section(
                "Summary",
                facts(
                    {
                        "datasets": number(len(report["datasets"])),
                        "releases": number(len(releases)),
                        "consumer runs": number(len(report["consumer_runs"])),
                        "recorded events": number(len(report["timeline"])),
                    }
                ),
                bar_chart(
                    "Examples per release",
                    {f"{r['dataset']} {r['version']}": r["examples"] for r in releases},
                    chart_id="examples-per-release",
                ),
            ),
            section(
                "Releases",
                *([_release_block(r, links) for r in releases] or ['<p class="muted">No release yet.</p>']),
            ),
            section(
                "Consumer runs",
                _consumer_table(report["consumer_runs"]),
            ),
            section(
                "Datasets",
                *(
                    [_dataset_section(d, links) for d in report["datasets"]]
                    or ['<p class="muted">No dataset yet.</p>']
                ),
            ),
            _timeline_section(report["timeline"], chain, links),
        ],
        subtitle="Built from the audit log, the release manifests, Prodigy and OpenText at "
        f"{moment(report['generated_at'])}.",
        style=STYLE,
    )
