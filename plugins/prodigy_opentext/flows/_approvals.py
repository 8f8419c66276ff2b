"""How every flow reads an approval back from OpenText: one check for batch approval, the release and its
consumer (:func:`~prodigy_opentext.core.approvals.check_approval` is the rule; this reads what it needs)."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable

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
from prodigy_opentext.exceptions import ApprovalRefused, DatasetNotGovernable
from prodigy_opentext.failures import DatasetRefused, ReleaseRefused
from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook
from prodigy_opentext.hooks.prodigy import ProdigyHook

log = logging.getLogger(__name__)


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
