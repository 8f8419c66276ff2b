"""The steps of compliance-driven labeling of regulated content (flow 5), as functions the DAG's tasks call.

DAG ``regulated_content_access`` (``dags/regulated_content_access.py``); process model
``include/bpmn/regulated_content_access.bpmn20.xml``; rules ``prodigy_opentext.core.regulated``; tests
``tests/flows/test_regulated.py``.

A case's content waits in the holding area, a folder only Airflow reads (never the Prodigy server, never
Prodigy's database). Airflow checks it there and posts its size and sha256 on the case (``hold_content``);
a compliance officer grants access naming the annotators; Airflow then masks the content (the redaction
callable), loads it as a dataset served to those sessions only (``load_content``), follows the labeling
like an annotation request's (``track_progress``: the batch goes to review, with its compliance step) and,
once a release holds every task, completes the case with metadata only (``await_release``). A case
cancelled after access was granted freezes its dataset: its stream is withdrawn, no session is served,
reviews and releases are refused.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.module_loading import import_string

from prodigy_opentext.core.audit import AuditLog, verify_audit_log
from prodigy_opentext.core.export import file_digest
from prodigy_opentext.core.intake import request_tasks
from prodigy_opentext.core.payloads import ClosedCase, HeldContent, ProvisionedDataset
from prodigy_opentext.core.records import read_task_source
from prodigy_opentext.core.regulated import (
    ACCESS_META_KEY,
    APPROVAL_STEP,
    HOLD_STEP,
    LOAD_STEP,
    REGULATED_PROCESS,
    RELEASE_STEP,
    AccessStatus,
    Redaction,
    access_meta,
    allowed_team,
    completion_metadata,
    parse_case,
    redact_tasks,
    revoked_meta,
)
from prodigy_opentext.core.release import verify_release
from prodigy_opentext.exceptions import OpenTextNotFoundError, RequestRefused
from prodigy_opentext.failures import AuditLogTampered
from prodigy_opentext.flows._shared import record_in_audit_log
from prodigy_opentext.flows.intake import (
    create_request_dataset,
    refuse_request,
    source_file,
    source_tasks,
    variables_of,
    waiting_requests,
)
from prodigy_opentext.flows.release import first_release_holding
from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook
from prodigy_opentext.hooks.prodigy import ProdigyHook

log = logging.getLogger(__name__)

HOLDING_AREA = "holding area"
CLOSED_END = "end_closed"
"""Where the model ends a case completed with its release."""
NO_REDACTION = ("", "none")


def redaction_from(dotted_path: str, setting: str = "REGULATED_REDACTION") -> Redaction | None:
    """The redaction callable a deployment names by dotted path (``""`` or ``none``: no redaction); a
    path that does not name a callable fails the task without retries, naming ``setting``."""
    if dotted_path.strip().lower() in NO_REDACTION:
        return None
    try:
        redact = import_string(dotted_path.strip())
    except ImportError as missing:
        raise AirflowFailException(
            f"{setting}={dotted_path!r} names no importable callable ({missing}): set it to a dotted path "
            "such as prodigy_opentext.core.regulated.mask_contact_details, or to none"
        ) from None
    if not callable(redact):
        raise AirflowFailException(f"{setting}={dotted_path!r} is not callable: name a function str -> str")
    return redact


def hold_cases(holding_root: Path, audit_path: Path, *, opentext: OpenTextWorkflowHook) -> list[HeldContent]:
    """Every new case's content checked in the holding area, its task count and sha256 posted on the case
    for the compliance officers; a case that cannot be taken is refused naming every field or row."""
    held = []
    for task in waiting_requests(opentext, HOLD_STEP, REGULATED_PROCESS):
        pid, values = task["processInstanceId"], variables_of(task)
        try:
            request = parse_case(pid, values, task_id=task["id"])
            held_file = source_file(request, holding_root, HOLDING_AREA)
            source, sha256 = _read_once(held_file)
            tasks = request_tasks(request, source)
        except RequestRefused as refused:
            refuse_request(pid, task["id"], refused.problems, opentext, audit_path, REGULATED_PROCESS, "held")
            held.append(HeldContent(process_instance_id=pid, dataset=None, tasks=0, content_sha256=None,
                                    refused=refused.problems))  # fmt: skip
            continue
        record_in_audit_log(
            audit_path,
            "regulated_content_held",
            request["dataset"],
            {"process_instance_id": pid, "tasks": len(tasks), "content_sha256": sha256,
             "classification": values["classification"], "held_file": str(held_file)},
            event_key=_held_key(pid),
        )  # fmt: skip
        opentext.add_comment(
            pid,
            f"{len(tasks)} tasks of {values['classification']} content wait in the holding area (sha256 "
            f"{sha256}); nothing is in Prodigy until access is granted, for the annotators the grant names.",
        )
        opentext.complete_task(
            task["id"],
            None,
            {"held": True, "tasks": len(tasks), "content_sha256": sha256},
        )
        log.info("case %s: %d tasks held for access approval (sha256 %s)", pid, len(tasks), sha256)
        held.append(HeldContent(process_instance_id=pid, dataset=request["dataset"], tasks=len(tasks),
                                content_sha256=sha256, refused=[]))  # fmt: skip
    return held


def load_granted(
    holding_root: Path,
    work_root: Path,
    audit_path: Path,
    *,
    opentext: OpenTextWorkflowHook,
    redact: Redaction | None,
    prodigy_conn_id: str = ProdigyHook.default_conn_name,
) -> list[ProvisionedDataset]:
    """Every case whose access was granted: its held content, unchanged since it was checked, masked by
    ``redact`` and loaded as a dataset served to the sessions the grant names only; or refused naming why."""
    loaded = []
    waiting = waiting_requests(opentext, LOAD_STEP, REGULATED_PROCESS)
    if waiting and not (chain := verify_audit_log(audit_path)).valid:
        raise AuditLogTampered(
            f"{audit_path}: {chain.reason}: the records of held content cannot be trusted; nothing loaded"
        )
    for task in waiting:
        pid, values = task["processInstanceId"], variables_of(task)
        try:
            loaded.append(
                _load(pid, task["id"], values, holding_root, work_root, audit_path, opentext, redact,
                      prodigy_conn_id)
            )  # fmt: skip
        except RequestRefused as refused:
            loaded.append(
                refuse_request(pid, task["id"], refused.problems, opentext, audit_path, REGULATED_PROCESS)
            )
    return loaded


def _load(
    pid: str,
    task_id: str,
    values: dict[str, Any],
    holding_root: Path,
    work_root: Path,
    audit_path: Path,
    opentext: OpenTextWorkflowHook,
    redact: Redaction | None,
    prodigy_conn_id: str,
) -> ProvisionedDataset:
    grant = opentext.last_completion(pid, APPROVAL_STEP) or {}
    granted_by = grant.get("assignee")
    team = allowed_team(grant.get("task_variables") or {}, granted_by)
    request = parse_case(pid, values, task_id=task_id) | {"annotators": team}
    if request["annotations_per_task"] > len(team):
        raise RequestRefused(
            [f"annotations_per_task {request['annotations_per_task']} needs that many allowed annotators, "
             f"the grant names {len(team)}"]
        )  # fmt: skip
    held = _held_entry(audit_path, pid)
    held_file = source_file(request | {"source": str(held["held_file"])}, holding_root, HOLDING_AREA)
    source, sha256 = _read_once(held_file)
    if sha256 != held["content_sha256"]:
        raise RequestRefused(
            [f"the held content changed after it was checked for the access approval (sha256 {sha256}, "
             f"approved for {held['content_sha256']}): start a new case for the new content"]
        )  # fmt: skip
    masked, changed = redact_tasks(source, redact)
    tasks = request_tasks(request, masked)
    redaction = getattr(redact, "__qualname__", None) if redact else None
    extra = access_meta(pid, str(values["classification"]), sha256, granted_by, team) | {
        "redaction": {"callable": redaction, "tasks_masked": changed}
    }
    audited = {"granted_by": granted_by, "content_sha256": sha256, "redaction": redaction,
               "tasks_masked": changed}  # fmt: skip
    return create_request_dataset(
        request, tasks, len(source), work_root, audit_path, opentext, prodigy_conn_id, REGULATED_PROCESS,
        extra, audited,
    )  # fmt: skip


def _read_once(path: Path) -> tuple[list[dict[str, Any]], str]:
    """A held file's tasks and the sha256 of exactly what was read (a file that changes while it is read
    is refused: what is loaded must be what was approved)."""
    try:
        before = file_digest(path).sha256
        tasks = source_tasks(path)
        after = file_digest(path).sha256
    except OSError as unreadable:
        raise RequestRefused(
            [f"the held content cannot be read ({unreadable.strerror}): put it back"]
        ) from None
    if before != after:
        raise RequestRefused(["the held content changed while it was read: let it settle, then grant again"])
    return tasks, after


def _held_key(pid: str) -> str:
    return f"{REGULATED_PROCESS}:{pid}:held"


def _held_entry(audit_path: Path, pid: str) -> dict[str, Any]:
    """What Airflow recorded when it checked the case's content (the file and its sha256): loading trusts
    its own record, not process variables anyone with access to the case can change."""
    key = _held_key(pid)
    for entry in AuditLog(audit_path).entries():
        if entry.get("event_key") == key:
            return dict(entry["details"])
    raise RequestRefused([f"Airflow has no record of checking this case's content ({key}): start a new case"])


def close_released(
    release_root: Path,
    audit_path: Path,
    *,
    opentext: OpenTextWorkflowHook,
    prodigy_conn_id: str = ProdigyHook.default_conn_name,
) -> list[ClosedCase]:
    """Every case whose tasks a published release holds, all of them: completed with the release's
    metadata (counts, annotators, dates, hashes, version), never a text; the case ends closed, and so
    does the dataset's access (there is nothing left to revoke)."""
    hook = ProdigyHook(prodigy_conn_id)
    closed = []
    for task in waiting_requests(opentext, RELEASE_STEP, REGULATED_PROCESS):
        pid, values = task["processInstanceId"], variables_of(task)
        dataset = str(values["dataset"])
        release = first_release_holding(release_root, dataset, set(values.get("input_hashes") or []))
        if release is None:
            log.info("case %s: no release of %s holds its tasks yet", pid, dataset)
            continue
        version, manifest_path = release
        manifest_sha256 = file_digest(manifest_path).sha256
        manifest = verify_release(manifest_path.parent)
        answers = read_task_source(manifest_path.parent / "annotations.jsonl", source_format="jsonl")
        figures = completion_metadata(manifest, manifest_sha256, answers)
        record_in_audit_log(
            audit_path, "regulated_case_closed", dataset, {"process_instance_id": pid, **figures},
            event_key=f"{REGULATED_PROCESS}:{pid}:closed",
        )  # fmt: skip
        opentext.add_comment(
            pid,
            f"Labeling complete: {figures['examples']} examples by {', '.join(figures['annotators'])}, "
            f"released as {dataset}@{version} (manifest sha256 {manifest_sha256}). Case closed.",
        )
        access = hook.get_meta(dataset).get(ACCESS_META_KEY) or {}
        hook.set_meta(dataset, {ACCESS_META_KEY: {**access, "status": AccessStatus.CLOSED}})
        opentext.complete_task(task["id"], None, {"completion": figures, "release_version": version,
                                                  "manifest_sha256": manifest_sha256})  # fmt: skip
        closed.append(ClosedCase(process_instance_id=pid, dataset=dataset, release_version=version,
                                 manifest_sha256=manifest_sha256))  # fmt: skip
    return closed


def freeze_revoked(
    audit_path: Path,
    *,
    opentext: OpenTextWorkflowHook,
    prodigy_conn_id: str = ProdigyHook.default_conn_name,
) -> list[str]:
    """Every regulated dataset whose case ended but closed after access was granted (cancelled, or refused
    by a load that found the dataset from an earlier try), frozen: no session
    served (meta ``sessions`` empty), its task stream withdrawn, the access marked revoked (reviews and
    releases refuse it). The held content stays where it was. Returns the datasets frozen now."""
    hook = ProdigyHook(prodigy_conn_id)
    frozen = []
    for dataset in hook.list_datasets():
        access = (dataset["meta"] or {}).get(ACCESS_META_KEY)
        if not isinstance(access, dict) or access.get("status") != AccessStatus.GRANTED:
            continue
        try:
            case = opentext.get_historic_process(str(access["case"]))
        except OpenTextNotFoundError:
            case = {"endTime": "unknown", "deleteReason": "the case no longer exists in OpenText"}
        if not case.get("endTime") or case.get("endActivityId") == CLOSED_END:
            continue
        name = dataset["name"]
        reason = str(case.get("deleteReason") or f"the case ended at {case.get('endActivityId')}")
        stream = Path(str(dataset["meta"].get("stream") or ""))
        if stream.name and stream.is_file():
            stream.unlink()
        hook.set_meta(name, revoked_meta(access, reason))
        record_in_audit_log(
            audit_path, "regulated_access_revoked", name, {"process_instance_id": access["case"],
                                                           "reason": reason, "stream_withdrawn": str(stream)},
            event_key=f"{REGULATED_PROCESS}:{access['case']}:revoked",
        )  # fmt: skip
        log.warning("dataset %s frozen: case %s was cancelled (%s)", name, access["case"], reason)
        frozen.append(name)
    return frozen
