"""The governance rules the flows share: batch identity, review state, and what counts as an approval.

Plain Python (no Airflow import). The DAGs wire these rules to the hooks; the rules themselves decide
which datasets are ready, which OpenText process stands for which batch, and whether a decision read back
from OpenText is an approval a release may rely on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

BATCH_APPROVAL_PROCESS = "annotation_batch_approval"
RELEASE_SIGNOFF_PROCESS = "dataset_release_signoff"
COMPLIANCE_TASK = "compliance_review"
APPROVED_END = "end_approved"
REVIEW_META_KEY = "review"


class ReviewStatus:
    """Values of ``meta["review"]["status"]`` on a Prodigy dataset."""

    READY = "ready"  # annotators are done; the next batch-approval run picks it up
    REQUESTED = "requested"  # an OpenText approval process is running
    APPROVED = "approved"
    REWORK = "rework"  # rejected: annotators rework it with the reviewers' comments


class ApprovalRefused(Exception):
    """A release was asked for without the approvals OpenText must hold for it."""


@dataclass(frozen=True)
class Batch:
    """One reviewable state of a dataset: its examples up to ``last_example_id``."""

    dataset: str
    last_example_id: int

    @property
    def version(self) -> str:
        """Stable for equal content (the same examples), new as soon as an answer arrives."""
        return f"b{self.last_example_id}"

    def business_key(self, process_key: str) -> str:
        return business_key(process_key, self.dataset, self.version)


def business_key(process_key: str, dataset: str, version: str) -> str:
    """OpenText businessKey of the process for (flow, dataset, version): how reruns find it again."""
    return f"{process_key}:{dataset}:{version}"


def version_last_example_id(version: str) -> int:
    """Inverse of :attr:`Batch.version`; a malformed version names itself."""
    if not version.startswith("b") or not version[1:].isdigit():
        raise ValueError(f"version {version!r} is not a batch version (b<last example id>, e.g. b1234)")
    return int(version[1:])


def review_state(meta: Mapping[str, Any]) -> dict[str, Any]:
    review = meta.get(REVIEW_META_KEY)
    return dict(review) if isinstance(review, Mapping) else {}


def datasets_ready_for_review(datasets: Iterable[Mapping[str, Any]], only: str | None = None) -> list[str]:
    """Datasets to (re)enter batch approval: marked ready, or requested but never recorded.

    A requested review whose wait failed (timeout, outage) comes back on the next run; its businessKey
    finds the same OpenText process, so nothing is asked twice. ``only`` narrows the list to one dataset.
    """
    waiting = (ReviewStatus.READY, ReviewStatus.REQUESTED)
    ready = [
        d["name"]
        for d in datasets
        if not d.get("session") and review_state(d.get("meta") or {}).get("status") in waiting
    ]
    return [name for name in ready if only in (None, "", name)]


def is_regulated(meta: Mapping[str, Any]) -> bool:
    """A dataset is regulated when its meta says so; params of a run cannot lower that."""
    return bool(meta.get("regulated"))


def approval_record(decision: Mapping[str, Any], *, kind: str) -> dict[str, Any]:
    """The part of an OpenText decision a sign-off record, an audit entry and a manifest keep."""
    return {
        "kind": kind,
        "process_instance_id": decision.get("process_instance_id"),
        "business_key": decision.get("business_key"),
        "outcome": decision.get("outcome"),
        "end_activity_id": decision.get("end_activity_id"),
        "approver": decision.get("approver"),
        "decided_at": decision.get("decided_at"),
        "comments": [
            {"author": c.get("author"), "message": c.get("message"), "time": c.get("time")}
            for c in decision.get("comments") or []
        ],
    }


def latest_instance(instances: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The process instance that stands for a businessKey: the one started last."""
    return max(instances, key=lambda p: str(p.get("startTime") or ""), default=None)


def check_approval(
    kind: str,
    expected_key: str,
    instances: list[Mapping[str, Any]],
    decision: Mapping[str, Any] | None,
    *,
    regulated: bool = False,
    reviewed_sha256: str | None = None,
) -> dict[str, Any]:
    """Accept an approval read back from OpenText, or raise :class:`ApprovalRefused` saying why.

    ``instances`` are every historic process instance with ``expected_key`` (with their process
    variables); the latest one (by start time) stands: a later instance for the same key that is still
    open, was cancelled or was rejected revokes an earlier approval. ``decision`` is the latest instance's
    decision. ``regulated`` data also needs the instance's compliance review approved. With
    ``reviewed_sha256``, the approval must be of exactly that data: the reviewers' package checksum,
    recorded as the process variable ``answers_sha256`` when the approval was requested.
    """
    latest = latest_instance(instances)
    if latest is None:
        raise ApprovalRefused(f"{kind}: no OpenText process with businessKey {expected_key!r}")
    pid = latest.get("id")
    if decision is None or decision.get("process_instance_id") != pid:
        raise ApprovalRefused(f"{kind}: process {pid} ({expected_key}) has no decision yet")
    if decision.get("delete_reason"):
        raise ApprovalRefused(f"{kind}: process {pid} was cancelled ({decision['delete_reason']})")
    if decision.get("end_activity_id") != APPROVED_END:
        raise ApprovalRefused(
            f"{kind}: process {pid} ended at {decision.get('end_activity_id')!r}, not {APPROVED_END!r} "
            f"(outcome {decision.get('outcome')!r})"
        )
    variables = process_variables(latest)
    if regulated and variables.get(f"{COMPLIANCE_TASK}_outcome") != "approved":
        raise ApprovalRefused(
            f"{kind}: the dataset is regulated and process {pid} holds no approved {COMPLIANCE_TASK}"
        )
    if reviewed_sha256 is not None and variables.get("answers_sha256") != reviewed_sha256:
        raise ApprovalRefused(
            f"{kind}: process {pid} approved data with sha256 {variables.get('answers_sha256')!r}, "
            f"but this version's data has sha256 {reviewed_sha256!r}: it changed after the review"
        )
    return approval_record(decision, kind=kind)


def process_variables(instance: Mapping[str, Any]) -> dict[str, Any]:
    """``{name: value}`` of an instance's ``variables`` (OpenText lists ``{name, value, type}``)."""
    return {v.get("name"): v.get("value") for v in instance.get("variables") or [] if isinstance(v, Mapping)}
