"""The steps of annotation request intake (flow 4), as functions the DAG's tasks call.

DAG ``annotation_request_intake`` (``dags/annotation_request_intake.py``); process model
``include/bpmn/annotation_request_intake.bpmn20.xml``; tests ``tests/flows/test_intake.py``.

A business user's request, once the data owners approved it in OpenText, waits at the model's
``provision_dataset`` step; Airflow finds the waiting requests, checks each with its source (nothing is
created for one it refuses: the request gets a comment naming every field or row to fix), creates the
Prodigy dataset and its task stream in priority and due-date order, and completes the step. While the
team annotates, Airflow posts the progress on the request (``track_progress``); at the target it marks
the batch ready and starts its review (label escalation, then QA or approval), and closes the request.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from prodigy_opentext.core.intake import (
    ATTACHMENT_SOURCE,
    INTAKE_PROCESS,
    PROGRESS_STEP,
    PROVISION_STEP,
    dataset_meta,
    parse_request,
    progress_figures,
    provisioning_order,
    request_tasks,
)
from prodigy_opentext.core.payloads import AnnotationRequest, ProvisionedDataset, RunRequest
from prodigy_opentext.core.records import dumps_compact, read_task_source
from prodigy_opentext.exceptions import DatasetNotFoundError, InvalidRecords, RequestRefused
from prodigy_opentext.flows._shared import checked_name, record_in_audit_log
from prodigy_opentext.flows.batch_approval import batch_to_review
from prodigy_opentext.flows.escalation import escalation_run
from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook
from prodigy_opentext.hooks.prodigy import ProdigyHook

log = logging.getLogger(__name__)

ATTACHMENTS_FOLDER = "attachments"
"""Below the intake folder: where requests' attached sources are downloaded (no plain source may name it)."""


def variables_of(task: dict[str, Any]) -> dict[str, Any]:
    return {v["name"]: v.get("value") for v in task.get("variables") or []}


def waiting_requests(
    opentext: OpenTextWorkflowHook, step: str, process_key: str = INTAKE_PROCESS
) -> list[dict[str, Any]]:
    """The open tasks ``step`` of ``process_key``'s instances, with their process variables."""
    return [
        task
        for task in opentext.list_tasks(
            processDefinitionKey=process_key, taskDefinitionKey=step, includeProcessVariables="true"
        )
        if task.get("taskDefinitionKey") == step
    ]


def provision_requests(
    source_root: Path,
    work_root: Path,
    audit_path: Path,
    *,
    opentext: OpenTextWorkflowHook,
    prodigy_conn_id: str = ProdigyHook.default_conn_name,
) -> list[ProvisionedDataset]:
    """Every approved request waiting for its dataset, provisioned in priority, then due-date order, or
    refused naming what to fix. Sources must lie under ``source_root`` (a request cannot make Airflow read
    any file it can)."""
    waiting = waiting_requests(opentext, PROVISION_STEP)
    done: list[ProvisionedDataset] = []
    requests: list[AnnotationRequest] = []
    for task in waiting:
        try:
            requests.append(parse_request(task["processInstanceId"], variables_of(task), task_id=task["id"]))
        except RequestRefused as refused:
            done.append(
                refuse_request(task["processInstanceId"], task["id"], refused.problems, opentext, audit_path)
            )
    ordered = provisioning_order(requests)
    log.info(
        "%d approved request(s) waiting: %s",
        len(waiting),
        ", ".join(f"{r['title']!r} (priority {r['priority']}, due {r['due_date']})" for r in ordered)
        or "none",
    )
    for request in ordered:
        try:
            done.append(_provision(request, source_root, work_root, audit_path, opentext, prodigy_conn_id))
        except RequestRefused as refused:
            done.append(
                refuse_request(
                    request["process_instance_id"], request["task_id"], refused.problems, opentext, audit_path
                )
            )
    return done


def source_file(request: AnnotationRequest, source_root: Path, folder: str = "intake folder") -> Path:
    """The request's source, a file under ``source_root`` (the ``folder`` a refusal names): a request
    cannot make Airflow read any file it can."""
    location = request["source"]
    path = Path(urlparse(location).path if location.startswith("file:") else location)
    path = path if path.is_absolute() else source_root / path
    root = source_root.resolve()
    if not path.resolve().is_relative_to(root):
        raise RequestRefused([f"source {location!r} is outside the {folder} {root}: put the file there"])
    if not path.is_file():
        raise RequestRefused([f"source {location!r} does not exist (looked for {path})"])
    return path


def _source_path(request: AnnotationRequest, source_root: Path, opentext: OpenTextWorkflowHook) -> Path:
    """Where the request's source is: a file in the intake folder, or the request's attachment of that
    name (``attachment:<name>``), downloaded into ``<intake>/attachments/<request id>/`` under the
    attachment's id (its name is only the file type: JSONL, CSV or plain text)."""
    location, attachments = request["source"], source_root / ATTACHMENTS_FOLDER
    if not location.startswith(ATTACHMENT_SOURCE):
        path = source_file(request, source_root)
        if path.resolve().is_relative_to(attachments.resolve()):
            raise RequestRefused([f"source {location!r} is another request's attachment: attach the file"])
        return path
    pid, name = request["process_instance_id"], location.removeprefix(ATTACHMENT_SOURCE).strip()
    attached = [a for a in opentext.list_attachments(pid) if a.get("name") == name]
    if not attached:
        raise RequestRefused(
            [f"source {location!r}: the request has no attachment {name!r}: attach the file"]
        )
    suffix = PurePosixPath(name.replace("\\", "/")).suffix.lower()
    attachment_id = checked_name(str(attached[-1]["id"]), "attachment id")
    target = attachments / checked_name(pid, "request id") / f"{attachment_id}{suffix}"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(opentext.attachment_content(pid, attachment_id))
    partial.replace(target)
    log.info(
        "request %s: source %s downloaded from its attachment (%d bytes)", pid, name, target.stat().st_size
    )
    return target


def source_tasks(path: Path) -> list[dict[str, Any]]:
    """The tasks of a request's source file, all bad rows named in one :class:`RequestRefused`."""
    try:
        return read_task_source(path)
    except InvalidRecords as invalid:
        named = [str(error) for error in invalid.errors[:20]]
        more = len(invalid.errors) - len(named)
        raise RequestRefused(named + ([f"... and {more} more invalid rows"] if more > 0 else [])) from None
    except ValueError as unreadable:
        raise RequestRefused([str(unreadable)]) from None


def _provision(
    request: AnnotationRequest,
    source_root: Path,
    work_root: Path,
    audit_path: Path,
    opentext: OpenTextWorkflowHook,
    prodigy_conn_id: str,
) -> ProvisionedDataset:
    """One request's dataset and task stream, created once: a rerun after a crash finds its own."""
    source = source_tasks(_source_path(request, source_root, opentext))
    return create_request_dataset(
        request, request_tasks(request, source), len(source), work_root, audit_path, opentext, prodigy_conn_id
    )


def create_request_dataset(
    request: AnnotationRequest,
    tasks: list[dict[str, Any]],
    given: int,
    work_root: Path,
    audit_path: Path,
    opentext: OpenTextWorkflowHook,
    prodigy_conn_id: str,
    process_key: str = INTAKE_PROCESS,
    extra_meta: dict[str, Any] | None = None,
    audit_details: dict[str, Any] | None = None,
) -> ProvisionedDataset:
    """A request's own dataset and task stream (``given`` tasks asked for, ``tasks`` after deduplication),
    created once, and the request's step completed: a rerun after a crash finds its own dataset; a dataset
    of that name made for other work refuses the request. ``extra_meta`` joins the dataset's meta,
    ``audit_details`` the audit entry."""
    pid, name = request["process_instance_id"], request["dataset"]
    hook = ProdigyHook(prodigy_conn_id)
    try:
        existing = hook.get_meta(name)
    except DatasetNotFoundError:
        existing = None
    owner = ((existing or {}).get("request") or {}).get("process_instance_id")
    if existing is not None and owner != pid:
        raise RequestRefused(
            [f"dataset {name!r} exists already (for {owner or 'other work'}): name another dataset"]
        )
    stream = work_root / checked_name(name, "dataset") / "tasks.jsonl"
    stream.parent.mkdir(parents=True, exist_ok=True)
    partial = stream.with_suffix(".jsonl.partial")
    partial.write_text("".join(dumps_compact(task) + "\n" for task in tasks))
    partial.replace(stream)
    meta = dataset_meta(request, str(stream)) | {"tasks": len(tasks)} | (extra_meta or {})
    if not hook.add_dataset(name, meta):
        hook.set_meta(name, meta)
    provisioned = ProvisionedDataset(
        process_instance_id=pid,
        dataset=name,
        tasks=len(tasks),
        duplicates=given - len(tasks),
        stream_path=str(stream),
        refused=[],
    )
    record_in_audit_log(
        audit_path,
        "request_provisioned",
        name,
        {
            **provisioned,
            "title": request["title"],
            "sessions": sorted(request["annotators"]),
            **(audit_details or {}),
        },
        event_key=f"{process_key}:{pid}:provisioned",
    )
    opentext.add_comment(
        pid,
        f"Prodigy dataset {name} provisioned: {len(tasks)} tasks ({provisioned['duplicates']} duplicates "
        f"dropped) for {', '.join(sorted(request['annotators']))}, {request['annotations_per_task']} "
        "annotation(s) per task.",
    )
    opentext.complete_task(
        request["task_id"],
        None,
        {
            "provisioned": True,
            "new_dataset": True,
            "dataset": name,
            "tasks": len(tasks),
            "duplicates": provisioned["duplicates"],
            "input_hashes": sorted({task["_input_hash"] for task in tasks}),
        },
    )
    log.info("request %s: dataset %s with %d tasks (stream %s)", pid, name, len(tasks), stream)
    return provisioned


def refuse_request(
    pid: str,
    task_id: str,
    problems: list[str],
    opentext: OpenTextWorkflowHook,
    audit_path: Path,
    process_key: str = INTAKE_PROCESS,
    done_flag: str = "provisioned",
) -> ProvisionedDataset:
    """Refuse a request: a comment naming every problem, the step completed with ``done_flag`` (the
    variable its model's gateway reads) false."""
    message = "Request refused, nothing was created: " + "; ".join(problems)
    log.warning("request %s: %s", pid, message)
    record_in_audit_log(
        audit_path,
        "request_refused",
        pid,
        {"problems": problems},
        event_key=f"{process_key}:{pid}:refused",
    )
    opentext.add_comment(pid, message)
    opentext.complete_task(task_id, None, {done_flag: False, "refused": message})
    return ProvisionedDataset(
        process_instance_id=pid, dataset=None, tasks=0, duplicates=0, stream_path=None, refused=problems
    )


def post_progress(
    audit_path: Path,
    *,
    opentext: OpenTextWorkflowHook,
    prodigy_conn_id: str = ProdigyHook.default_conn_name,
    process_key: str = INTAKE_PROCESS,
) -> list[RunRequest]:
    """The annotation progress of every request of ``process_key`` whose dataset is being annotated, posted
    on it; a request whose target is reached has its batch marked ready, its review run requested, and
    its ``track_progress`` step completed."""
    hook = ProdigyHook(prodigy_conn_id)
    reviews = []
    for task in waiting_requests(opentext, PROGRESS_STEP, process_key):
        pid, values = task["processInstanceId"], variables_of(task)
        dataset = str(values["dataset"])
        meta = hook.get_meta(dataset)
        answers = {
            name: figures["answers"]
            for name, figures in hook.annotator_progress(dataset)["annotators"].items()
        }
        figures = progress_figures(answers, int(meta["tasks"]), int(meta["annotations_per_task"]), dataset)
        if figures != values.get("progress"):
            opentext.set_variables(pid, {"progress": figures, "progress_percent": figures["percent"]})
        log.info("request %s (%s): %d of %d answers", pid, dataset, figures["answers"], figures["target"])
        if not figures["reached"]:
            continue
        batch = batch_to_review(dataset, prodigy_conn_id=prodigy_conn_id)
        if batch is None:
            continue
        run = escalation_run(batch)
        hook.set_meta(dataset, {"review": {"status": "ready"}})
        record_in_audit_log(
            audit_path,
            "request_annotated",
            dataset,
            {"process_instance_id": pid, "version": batch["version"], "review_run": run["run_id"], **figures},
            event_key=f"{process_key}:{pid}:annotated",
        )
        opentext.add_comment(
            pid, f"Annotation done ({figures['answers']} answers): batch {batch['version']} goes to review."
        )
        opentext.complete_task(
            task["id"], None, {"batch_version": batch["version"], "review_run": run["run_id"]}
        )
        reviews.append(run)
    return reviews
