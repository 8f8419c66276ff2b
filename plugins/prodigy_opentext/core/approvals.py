"""What counts as an approval: one rule for the approval sensor, the release check and reports.

Plain Python (no Airflow import). An approval counts only as OpenText records it: the decision the hooks read
from OpenText's history (:class:`~prodigy_opentext.core.payloads.Decision`), never a value from XCom,
params or a trigger event.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prodigy_opentext.core.paths import INCLUDE_DIR
from prodigy_opentext.core.payloads import ApprovalRecord, Decision, JudgedDecision
from prodigy_opentext.core.records import session_name_in
from prodigy_opentext.exceptions import ApprovalRefused, DatasetNotGovernable

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
DUPLICATE_START = "duplicate start of "
ANNOTATOR_EMAILS_META = "annotator_emails"
"""The dataset meta that names each Prodigy session's person as OpenText knows them (their e-mail)."""


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
    """One step an approval needs: a user task of the model, offered to ``group`` and completed with
    ``outcome`` by a member of that group."""

    task: str
    outcome: str
    group: str


def required_steps(process_key: str, *, regulated: bool, policy_path: Path = POLICY_PATH) -> list[Step]:
    """The steps ``process_key`` needs by policy (``include/policies/approvals.json``) for a dataset that
    is (or is not) regulated; regulated-ness is the dataset's own, never the process's."""
    try:
        policy = json.loads(Path(policy_path).read_text())[process_key]
        kinds = ("steps", "regulated_steps") if regulated else ("steps",)
        return [Step(step["task"], step["outcome"], step["group"]) for kind in kinds for step in policy[kind]]
    except (OSError, ValueError, KeyError, TypeError) as broken:
        raise ValueError(f"{policy_path}: no usable policy for {process_key!r} ({broken!r})") from None


def deciders(history: Sequence[Mapping[str, Any]]) -> list[str]:
    """Who completed tasks in a task history: whose groups :func:`step_problems` needs."""
    return sorted({str(t["assignee"]) for t in history if t.get("endTime") and t.get("assignee")})


def person_of(dataset: str, session: str, meta: Mapping[str, Any]) -> str | None:
    """The OpenText user behind a Prodigy session (``<dataset>-<name>`` or ``<name>``): named by the
    dataset meta ``annotator_emails`` (``{"<name>": "<e-mail>"}``), or the session is an e-mail itself."""
    named = meta.get(ANNOTATOR_EMAILS_META) or {}
    if not isinstance(named, Mapping):
        raise DatasetNotGovernable(
            f'dataset {dataset!r}: meta "{ANNOTATOR_EMAILS_META}" must map session names to e-mails'
        )
    name = session_name_in(dataset, session)
    person = named.get(session) or named.get(name) or (name if "@" in name else None)
    return same_person(str(person)) if person else None


def same_person(email: str) -> str:
    """An e-mail as compared for separation of duties: directories match addresses case-insensitively."""
    return email.strip().casefold()


def annotator_identities(dataset: str, sessions: Iterable[str], meta: Mapping[str, Any]) -> list[str]:
    """The people (OpenText e-mails) who annotated a batch, from its Prodigy sessions
    (:func:`person_of`): nobody who annotated a batch may approve it. A session nobody is named for
    fails the check at once (:class:`DatasetNotGovernable`): without it separation of duties cannot be
    checked."""
    people, unnamed = set(), []
    for session in sessions:
        person = person_of(dataset, session, meta)
        if person:
            people.add(person)
        else:
            unnamed.append(session_name_in(dataset, session))
    if unnamed:
        example = json.dumps({name: f"{name}@example.com" for name in unnamed[:2]})
        raise DatasetNotGovernable(
            f"dataset {dataset!r}: annotator session(s) {', '.join(sorted(unnamed))} name no OpenText "
            f'user, so nobody can check they do not approve their own work: set "{ANNOTATOR_EMAILS_META}" '
            f"in the dataset's meta, e.g. {example}"
        )
    return sorted(people)


def step_problems(
    steps: Sequence[Step],
    history: Sequence[Mapping[str, Any]],
    *,
    memberships: Mapping[str, Collection[str]],
    annotators: Collection[str] = (),
) -> list[str]:
    """What the process's task history lacks for ``steps``: each completed (latest try) with its outcome,
    offered to the step's group and decided by a member of it (``memberships``: each decider's groups,
    as OpenText's directory has them), by nobody who annotated the batch (``annotators``), and no user
    deciding two steps of one chain. Empty when everything holds.

    Only what OpenText records about each task counts (its ``outcome``, ``assignee`` and candidate groups
    in history): process variables, which whoever completes a task can set, count for nothing.
    """
    completed: dict[str, Mapping[str, Any]] = {}
    for task in sorted(history, key=lambda t: str(t.get("endTime") or "")):
        if task.get("endTime") and not task.get("deleteReason"):
            completed[str(task.get("taskDefinitionKey"))] = task
    problems: list[str] = []
    decided: dict[str, str] = {}
    for step in steps:
        found = completed.get(step.task)
        if found is None:
            problems.append(f"no completed {step.task!r} task")
            continue
        if found.get("outcome") != step.outcome:
            problems.append(
                f"{step.task!r} ended with outcome {found.get('outcome')!r}, not {step.outcome!r}"
            )
        offered = found.get("candidateGroups") or []
        if step.group not in offered:
            problems.append(f"{step.task!r} was offered to {offered}, not to the group {step.group!r}")
        decider = found.get("assignee")
        if not decider:
            problems.append(f"{step.task!r} names no user who decided it")
            continue
        if step.group not in memberships.get(decider, ()):
            problems.append(f"{decider} decided {step.task!r} but is not a member of {step.group!r}")
        if same_person(decider) in {same_person(a) for a in annotators}:
            problems.append(f"{decider} decided {step.task!r} but annotated this batch")
        if decider in decided:
            twice = f"{decider} decided both {decided[decider]!r} and {step.task!r}"
            problems.append(f"{twice}: nobody approves twice in one chain")
        else:
            decided[decider] = step.task
    return problems


def duplicate_start_reason(business_key: str, kept_id: str) -> str:
    """The delete reason of a process cancelled because another start for its businessKey won a race."""
    return f"{DUPLICATE_START}{business_key}: {kept_id} stands"


def latest_instance(instances: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The process instance that stands for a businessKey: the one started last, leaving out duplicates
    cancelled when two starts raced (:func:`duplicate_start_reason`)."""
    return max(standing_instances(instances), key=lambda p: str(p.get("startTime") or ""), default=None)


def standing_instances(instances: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The instances that count for a businessKey: all but duplicates cancelled after a start race whose
    kept instance is among them and started earlier (a delete reason alone proves nothing)."""
    started = {p.get("id"): str(p.get("startTime") or "") for p in instances}

    def duplicate(process: Mapping[str, Any]) -> bool:
        reason = str(process.get("deleteReason") or "")
        if not reason.startswith(DUPLICATE_START) or not reason.endswith(" stands"):
            return False
        kept = reason.removesuffix(" stands").rsplit(": ", 1)[-1]
        return kept in started and started[kept] <= str(process.get("startTime") or "")

    return [p for p in instances if not duplicate(p)]


def check_approval(
    kind: str,
    expected_key: str,
    instances: Sequence[Mapping[str, Any]],
    decision: Decision | None,
    variables: Mapping[str, Any],
    *,
    steps: Sequence[Step] = (),
    history: Sequence[Mapping[str, Any]] = (),
    memberships: Mapping[str, Collection[str]] | None = None,
    annotators: Collection[str] = (),
    reviewed_sha256: str | None = None,
) -> ApprovalRecord:
    """Accept an approval read back from OpenText, or raise :class:`ApprovalRefused` saying why.

    ``instances`` are every historic process instance with ``expected_key``; the latest one (by start
    time) stands: a later instance for the same key that is still open, was cancelled or was rejected
    revokes an earlier approval. ``decision`` and ``variables`` are the latest instance's decision and
    process variables, ``history`` its historic tasks, which must hold every one of ``steps`` (the
    policy's, :func:`required_steps`; :func:`step_problems` says what counts, with ``memberships`` and
    ``annotators``). With
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
    problems = step_problems(steps, history, memberships=memberships or {}, annotators=annotators)
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
