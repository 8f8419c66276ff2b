"""What counts as an approval: one rule for the approval sensor, the release check and reports.

Plain Python (no Airflow import). An approval counts only as OpenText records it: the decision the hooks read
from OpenText's history (:class:`~prodigy_opentext.core.payloads.Decision`), never a value from XCom,
params or a trigger event.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prodigy_opentext.core.paths import INCLUDE_DIR
from prodigy_opentext.core.payloads import ApprovalRecord, Decision, JudgedDecision
from prodigy_opentext.exceptions import ApprovalRefused

BATCH_APPROVAL_PROCESS = "annotation_batch_approval"
RELEASE_SIGNOFF_PROCESS = "dataset_release_signoff"
APPROVAL_PROCESSES = {"batch_approval": BATCH_APPROVAL_PROCESS, "release_signoff": RELEASE_SIGNOFF_PROCESS}
"""The approvals a release needs, by kind, and the process (``include/bpmn``) that records each."""
POLICY_PATH = INCLUDE_DIR / "policies" / "approvals.json"
"""Which steps each approval process needs, for any dataset and for regulated ones."""

APPROVED_OUTCOMES = ("approved", "pass")
"""Outcomes of the project's decision tasks that approve (reviews approve, QA checks pass)."""
APPROVED_END_ACTIVITIES = ("end_approved", "end_passed")
"""End events of the project's models that say the whole process approved."""
APPROVAL_END = "end_approved"
"""Where the approval models (batch approval, release sign-off) end when every step approved."""


def is_approved(
    decision: Decision,
    *,
    outcomes: Iterable[str] = APPROVED_OUTCOMES,
    end_activities: Iterable[str] = APPROVED_END_ACTIVITIES,
) -> bool:
    """Whether a decision read from OpenText approves, judged by what was waited for.

    A cancelled process never approves. A wait for the whole process is judged by the end event the
    process reached, the model's own verdict on every step (an SME's approval followed by a compliance
    rejection ends rejected, whatever outcome variables say); an ended process without an end event does
    not approve. A wait for one task (or a decision variable) is judged by that task's outcome, whenever
    it is read, whatever later steps decide.
    """
    if decision["delete_reason"]:
        return False
    if decision["watched"] == "process":
        return decision["ended"] and decision["end_activity_id"] in tuple(end_activities)
    return decision["outcome"] is not None and str(decision["outcome"]) in tuple(outcomes)


def judged(decision: Decision, **rule: Iterable[str]) -> JudgedDecision:
    """The decision with its verdict by :func:`is_approved` (``rule``: ``outcomes``, ``end_activities``)."""
    return JudgedDecision(**decision, approved=is_approved(decision, **rule))


def approval_record(decision: Decision, *, kind: str) -> ApprovalRecord:
    """The part of an OpenText decision a sign-off record, an audit entry and a manifest keep."""
    return ApprovalRecord(
        kind=kind,
        process_instance_id=decision["process_instance_id"],
        business_key=decision["business_key"],
        outcome=decision["outcome"],
        end_activity_id=decision["end_activity_id"],
        approver=decision["approver"],
        decided_at=decision["decided_at"],
        comments=list(decision["comments"]),
    )


@dataclass(frozen=True)
class Step:
    """One step an approval needs: a user task of the model, completed with this outcome."""

    task: str
    outcome: str


def required_steps(process_key: str, *, regulated: bool, policy_path: Path = POLICY_PATH) -> list[Step]:
    """The steps ``process_key`` needs by policy (``include/policies/approvals.json``) for a dataset that
    is (or is not) regulated; regulated-ness is the dataset's own, never the process's."""
    try:
        policy = json.loads(Path(policy_path).read_text())[process_key]
        groups = ("steps", "regulated_steps") if regulated else ("steps",)
        return [Step(step["task"], step["outcome"]) for group in groups for step in policy[group]]
    except (OSError, ValueError, KeyError, TypeError) as broken:
        raise ValueError(f"{policy_path}: no usable policy for {process_key!r} ({broken!r})") from None


def step_problems(steps: Sequence[Step], history: Sequence[Mapping[str, Any]]) -> list[str]:
    """What the process's task history lacks for ``steps``: each completed (latest try) with its outcome
    by a named user, and no user deciding two steps of one chain. Empty when everything holds.

    Only what OpenText records about each task counts (its ``outcome`` and ``assignee`` in history):
    process variables, which whoever completes a task can set, count for nothing.
    """
    completed: dict[str, Mapping[str, Any]] = {}
    for task in sorted(history, key=lambda t: str(t.get("endTime") or "")):
        if task.get("endTime") and not task.get("deleteReason"):
            completed[str(task.get("taskDefinitionKey"))] = task
    problems: list[str] = []
    deciders: dict[str, str] = {}
    for step in steps:
        found = completed.get(step.task)
        if found is None:
            problems.append(f"no completed {step.task!r} task")
            continue
        if found.get("outcome") != step.outcome:
            problems.append(
                f"{step.task!r} ended with outcome {found.get('outcome')!r}, not {step.outcome!r}"
            )
        decider = found.get("assignee")
        if not decider:
            problems.append(f"{step.task!r} names no user who decided it")
        elif decider in deciders:
            twice = f"{decider} decided both {deciders[decider]!r} and {step.task!r}"
            problems.append(f"{twice}: nobody approves twice in one chain")
        else:
            deciders[decider] = step.task
    return problems


def latest_instance(instances: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The process instance that stands for a businessKey: the one started last."""
    return max(instances, key=lambda p: str(p.get("startTime") or ""), default=None)


def check_approval(
    kind: str,
    expected_key: str,
    instances: Sequence[Mapping[str, Any]],
    decision: Decision | None,
    variables: Mapping[str, Any],
    *,
    steps: Sequence[Step] = (),
    history: Sequence[Mapping[str, Any]] = (),
    reviewed_sha256: str | None = None,
) -> ApprovalRecord:
    """Accept an approval read back from OpenText, or raise :class:`ApprovalRefused` saying why.

    ``instances`` are every historic process instance with ``expected_key``; the latest one (by start
    time) stands: a later instance for the same key that is still open, was cancelled or was rejected
    revokes an earlier approval. ``decision`` and ``variables`` are the latest instance's decision and
    process variables, ``history`` its historic tasks, which must hold every one of ``steps`` (the
    policy's, :func:`required_steps`; :func:`step_problems` says what counts). With
    ``reviewed_sha256``, the approval must be of exactly that data: the reviewers' package checksum,
    recorded as the process variable ``answers_sha256`` when the approval was requested.
    """
    latest = latest_instance(instances)
    if latest is None:
        raise ApprovalRefused(f"{kind}: no OpenText process with businessKey {expected_key!r}")
    pid = latest.get("id")
    if decision is None or decision["process_instance_id"] != pid or not decision["ended"]:
        raise ApprovalRefused(f"{kind}: process {pid} ({expected_key}) has no decision yet")
    if decision["watched"] != "process":
        raise ApprovalRefused(f"{kind}: process {pid}: only the end of the whole process can approve")
    if decision["delete_reason"]:
        raise ApprovalRefused(f"{kind}: process {pid} was cancelled ({decision['delete_reason']})")
    if not is_approved(decision, end_activities=(APPROVAL_END,)):
        raise ApprovalRefused(
            f"{kind}: process {pid} did not approve: it ended at {decision['end_activity_id']!r}, not "
            f"{APPROVAL_END!r} (outcome {decision['outcome']!r})"
        )
    problems = step_problems(steps, history)
    if problems:
        raise ApprovalRefused(
            f"{kind}: process {pid} ended approved, but in its task history: " + "; ".join(problems)
        )
    if reviewed_sha256 is not None and variables.get("answers_sha256") != reviewed_sha256:
        raise ApprovalRefused(
            f"{kind}: process {pid} approved data with sha256 {variables.get('answers_sha256')!r}, "
            f"but this version's data has sha256 {reviewed_sha256!r}: it changed after the review"
        )
    return approval_record(decision, kind=kind)
