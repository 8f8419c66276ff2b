"""The steps of model improvement requests (flow 8), as functions the DAG's tasks call.

DAG ``model_improvement_requests`` (``dags/model_improvement_requests.py``); process model
``include/bpmn/model_improvement_request.bpmn20.xml``; tests ``tests/flows/test_improvement.py``.

Operations, customer service or compliance say in OpenText what a model gets wrong, with example inputs;
once the ML leads approve, Airflow adds the examples as annotation tasks tagged with the request, in a new
dataset (followed like an annotation request's) or in the Airflow-provisioned dataset the request names,
and completes the request when a published release holds every one of its tasks, with the release
version and its manifest's sha256.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prodigy_opentext.core.export import file_digest
from prodigy_opentext.core.intake import example_tasks, improvement_request, request_tasks
from prodigy_opentext.core.payloads import AnnotationRequest, ProvisionedDataset
from prodigy_opentext.core.records import dumps_compact, read_task_source
from prodigy_opentext.exceptions import DatasetNotFoundError, RequestRefused
from prodigy_opentext.flows._shared import record_in_audit_log
from prodigy_opentext.flows.intake import (
    create_request_dataset,
    refuse_request,
    variables_of,
    waiting_requests,
)
from prodigy_opentext.flows.release import first_release_holding
from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook
from prodigy_opentext.hooks.prodigy import ProdigyHook

log = logging.getLogger(__name__)

IMPROVEMENT_PROCESS = "model_improvement_request"
ADD_STEP = "add_examples"
RELEASE_STEP = "await_release"


def add_requested_examples(
    work_root: Path,
    audit_path: Path,
    *,
    opentext: OpenTextWorkflowHook,
    prodigy_conn_id: str = ProdigyHook.default_conn_name,
) -> list[ProvisionedDataset]:
    """Every approved improvement request's examples added as tasks, or the request refused naming why."""
    hook = ProdigyHook(prodigy_conn_id)
    done = []
    for task in waiting_requests(opentext, ADD_STEP, IMPROVEMENT_PROCESS):
        pid, values = task["processInstanceId"], variables_of(task)
        try:
            existing = _named_dataset(hook, values.get("dataset"), new=bool(values.get("labels")))
            request = improvement_request(pid, task["id"], values, existing)
            tasks = request_tasks(request, example_tasks(values))
            if existing is None:
                created = create_request_dataset(
                    request,
                    tasks,
                    len(values["examples"]),
                    work_root,
                    audit_path,
                    opentext,
                    prodigy_conn_id,
                    IMPROVEMENT_PROCESS,
                )
                done.append(created)
            else:
                done.append(_join(request, tasks, existing, hook, audit_path, opentext))
        except RequestRefused as refused:
            done.append(
                refuse_request(pid, task["id"], refused.problems, opentext, audit_path, IMPROVEMENT_PROCESS)
            )
    return done


def _named_dataset(hook: ProdigyHook, name: Any, *, new: bool) -> dict[str, Any] | None:
    """The meta of the dataset a request names for its examples to join, which must have a task stream
    Airflow provisioned; None for a new dataset (no name, or a name not taken when the request gives the
    labels for a new one: ``new``)."""
    if not name:
        return None
    try:
        meta = hook.get_meta(str(name))
    except DatasetNotFoundError:
        if new:
            return None
        raise RequestRefused(
            [
                f"dataset {name!r} does not exist: name a dataset Airflow provisioned, or give labels for "
                "a new one"
            ]
        ) from None
    if not meta.get("stream"):
        raise RequestRefused(
            [f"dataset {name!r} has no task stream Airflow provisioned (meta stream): tasks cannot join it"]
        )
    return meta


def _join(
    request: AnnotationRequest,
    tasks: list[dict[str, Any]],
    meta: dict[str, Any],
    hook: ProdigyHook,
    audit_path: Path,
    opentext: OpenTextWorkflowHook,
) -> ProvisionedDataset:
    """The request's tasks appended to the named dataset's stream (those it holds already are not)."""
    pid, name, stream = request["process_instance_id"], request["dataset"], Path(meta["stream"])
    held = (
        {t["_task_hash"] for t in read_task_source(stream, source_format="jsonl")}
        if stream.exists()
        else set()
    )
    new = [task for task in tasks if task["_task_hash"] not in held]
    if new:
        with stream.open("a") as out:
            out.write("".join(dumps_compact(task) + "\n" for task in new))
    hook.set_meta(name, {"tasks": len(held) + len(new)})
    joined = ProvisionedDataset(
        process_instance_id=pid,
        dataset=name,
        tasks=len(tasks),
        duplicates=len(tasks) - len(new),
        stream_path=str(stream),
        refused=[],
    )
    record_in_audit_log(
        audit_path,
        "improvement_examples_added",
        name,
        dict(joined),
        event_key=f"{IMPROVEMENT_PROCESS}:{pid}:added",
    )
    opentext.add_comment(
        pid, f"{len(new)} example(s) added to Prodigy dataset {name} ({len(tasks) - len(new)} there already)."
    )
    opentext.complete_task(
        request["task_id"],
        None,
        {
            "provisioned": True,
            "new_dataset": False,
            "dataset": name,
            "tasks": len(tasks),
            "input_hashes": sorted({task["_input_hash"] for task in tasks}),
        },
    )
    return joined


def close_delivered(
    release_root: Path, audit_path: Path, *, opentext: OpenTextWorkflowHook
) -> list[dict[str, Any]]:
    """Every request waiting for a release: completed with the first published release of its dataset that
    holds every one of its tasks (by input hash), its version and its manifest's sha256."""
    closed = []
    for task in waiting_requests(opentext, RELEASE_STEP, IMPROVEMENT_PROCESS):
        pid, values = task["processInstanceId"], variables_of(task)
        dataset, wanted = str(values["dataset"]), set(values.get("input_hashes") or [])
        release = first_release_holding(release_root, dataset, wanted)
        if release is None:
            log.info(
                "improvement request %s: no release of %s holds its %d tasks yet", pid, dataset, len(wanted)
            )
            continue
        version, manifest = release
        sha256 = file_digest(manifest).sha256
        delivered = {
            "release_version": version,
            "manifest_sha256": sha256,
            "release_path": str(manifest.parent),
        }
        record_in_audit_log(
            audit_path, "improvement_delivered", dataset, {"process_instance_id": pid, **delivered},
            event_key=f"{IMPROVEMENT_PROCESS}:{pid}:delivered",
        )  # fmt: skip
        opentext.add_comment(pid, f"Delivered in release {dataset}@{version} (manifest sha256 {sha256}).")
        opentext.complete_task(task["id"], None, {"release_version": version, "manifest_sha256": sha256})
        closed.append({"process_instance_id": pid, "dataset": dataset, **delivered})
    return closed
