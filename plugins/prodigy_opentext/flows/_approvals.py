"""How every flow reads an approval back from OpenText: one check for batch approval, the release and its
consumer (:func:`~prodigy_opentext.core.approvals.check_approval` is the rule; this reads what it needs),
and the QA a dataset's meta asks for, which must have passed before either approval is asked for."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from itertools import count
from typing import Any

from prodigy_opentext._opentext.variables import from_rest_variables
from prodigy_opentext.core.approvals import (
    APPROVAL_PROCESSES,
    annotator_identities,
    check_approval,
    deciders,
    latest_instance,
    required_steps,
)
from prodigy_opentext.core.batches import business_key
from prodigy_opentext.core.payloads import ApprovalRecord, ApprovedVersion
from prodigy_opentext.core.qa import ENDS, PASSED, QA_PROCESS, SETTINGS, qa_business_key
from prodigy_opentext.exceptions import ApprovalRefused, DatasetNotGovernable
from prodigy_opentext.failures import DatasetRefused, ReleaseRefused
from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook
from prodigy_opentext.hooks.prodigy import ProdigyHook

log = logging.getLogger(__name__)

QA_SETTINGS_META = "qa_review"
"""The dataset meta that sends a dataset's batches through QA before their approval: the QA DAG's params
(:data:`~prodigy_opentext.core.qa.SETTINGS`), ``{}`` for the defaults."""


def annotators_of(
    dataset: str, sessions: Iterable[str], prodigy_conn_id: str = ProdigyHook.default_conn_name
) -> list[str]:
    """The people behind a batch's sessions, by the dataset's meta
    (:func:`~prodigy_opentext.core.approvals.annotator_identities`); a session naming nobody fails the
    task at once, before anyone is asked to approve."""
    try:
        return annotator_identities(dataset, sessions, ProdigyHook(prodigy_conn_id).get_meta(dataset))
    except DatasetNotGovernable as unnamed:
        raise DatasetRefused(str(unnamed)) from None


def read_approval(
    hook: OpenTextWorkflowHook,
    kind: str,
    target: ApprovedVersion,
    *,
    annotators: Collection[str] = (),
    reviewed_sha256: str | None = None,
) -> ApprovalRecord:
    """The approval of ``kind`` for this dataset version as OpenText records it, or
    :class:`~prodigy_opentext.exceptions.ApprovalRefused` saying what is missing: the latest process for
    its businessKey, its end event, its task history by policy, each decider's groups in the directory."""
    process_key = APPROVAL_PROCESSES[kind]
    key = business_key(process_key, target["dataset"], target["version"])
    instances = hook.historic_processes(
        processDefinitionKey=process_key, businessKey=key, includeProcessVariables="true"
    )
    latest = latest_instance(instances) or {}
    decision = hook.read_decision(latest["id"]) if latest else None
    history = hook.historic_tasks(processInstanceId=latest["id"], finished=True) if latest else []
    return check_approval(
        kind,
        key,
        instances,
        decision,
        from_rest_variables(latest.get("variables")),
        steps=required_steps(process_key, regulated=target["regulated"]),
        history=history,
        memberships={user: hook.user_groups(user) for user in deciders(history)},
        annotators=annotators,
        reviewed_sha256=reviewed_sha256,
    )


def verify_approvals(
    target: ApprovedVersion,
    kinds: Iterable[str] = tuple(APPROVAL_PROCESSES),
    reviewed_sha256: str | None = None,
    annotators: Collection[str] = (),
    opentext_conn_id: str = OpenTextWorkflowHook.default_conn_name,
) -> list[ApprovalRecord]:
    """Read the approvals a release needs back from OpenText; refuse (:class:`ReleaseRefused`, no
    retries) when one is missing or does not hold.

    ``reviewed_sha256`` (the checksum of the data about to be released) must be the checksum the batch
    approval was requested for: reviewers approved exactly these answers. ``annotators`` (e-mails) may
    approve none of it.
    """
    hook = OpenTextWorkflowHook(opentext_conn_id)
    approvals = []
    for kind in kinds:
        batch = kind == "batch_approval"
        try:
            approval = read_approval(
                hook,
                kind,
                target,
                annotators=annotators,
                reviewed_sha256=reviewed_sha256 if batch else None,
            )
        except ApprovalRefused as refused:
            raise ReleaseRefused(str(refused)) from refused
        log.info(
            "%s of %s@%s: approved by %s at %s",
            kind,
            target["dataset"],
            target["version"],
            approval["approver"],
            approval["decided_at"],
        )
        approvals.append(approval)
    return approvals


def qa_settings(dataset: str, meta: dict[str, Any]) -> dict[str, Any] | None:
    """The dataset's QA settings (its meta ``qa_review``), None when it asks for no QA; settings that are
    not an object, or name something the QA flow does not take, fail without retries saying so."""
    settings = meta.get(QA_SETTINGS_META)
    if settings is None:
        return None
    if not isinstance(settings, dict):
        raise DatasetRefused(
            f"dataset {dataset!r}: meta {QA_SETTINGS_META} must be an object of QA settings ({{}} for the "
            f"defaults), not {settings!r}"
        )
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise DatasetRefused(
            f"dataset {dataset!r}: meta {QA_SETTINGS_META} sets {', '.join(unknown)}, which QA does not take "
            f"(it takes {', '.join(SETTINGS)})"
        )
    return dict(settings)


def qa_problem(
    dataset: str,
    version: str,
    meta: dict[str, Any],
    opentext_conn_id: str = OpenTextWorkflowHook.default_conn_name,
) -> str | None:
    """Why this version may not be approved or released for want of QA, as OpenText records its rounds
    (None: its latest ``qa_review`` round passed, or the leads accepted it, or the dataset asks for no QA)."""
    if qa_settings(dataset, meta) is None:
        return None
    hook = OpenTextWorkflowHook(opentext_conn_id)
    latest = None
    for qa_round in count(1):
        found = hook.find_by_business_key(QA_PROCESS, qa_business_key(dataset, version, qa_round))
        if found is None:
            break
        latest = (qa_round, found)
    if latest is None:
        return (
            f"{dataset}@{version} has had no QA round, and its meta asks for QA: run qa_rework for it first"
        )
    qa_round, process = latest
    if not process.get("endTime"):
        return f"{dataset}@{version}: QA round {qa_round} (process {process['id']}) is not decided yet"
    if ENDS.get(str(process.get("endActivityId"))) != PASSED:
        ended = process.get("deleteReason") or process.get("endActivityId")
        return f"{dataset}@{version}: QA round {qa_round} (process {process['id']}) ended {ended}, not passed"
    return None


def require_qa(
    target: ApprovedVersion, opentext_conn_id: str = OpenTextWorkflowHook.default_conn_name
) -> None:
    """:func:`qa_problem` as a refusal without retries
    (:class:`~prodigy_opentext.failures.DatasetRefused`)."""
    meta = ProdigyHook().get_meta(target["dataset"])
    problem = qa_problem(target["dataset"], target["version"], meta, opentext_conn_id)
    if problem:
        raise DatasetRefused(problem)
