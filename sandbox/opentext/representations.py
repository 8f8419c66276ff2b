"""JSON bodies of the API: Flowable's field names, OpenText's timestamps and its HAL list envelope."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode

from sandbox.opentext.clock import format_timestamp
from sandbox.opentext.service import Page
from sandbox.opentext.variables import Variable


def hal_page(
    collection: str, items: list[dict[str, Any]], page: Page, url: str, query: dict[str, str]
) -> dict:
    """``{"_embedded": {collection: [...]}, "_links": {...}, "page": {...}}``.

    Like the Spring HATEOAS service behind OpenText, an empty page has no ``_embedded`` at all, and
    ``next``/``prev`` links appear only when such a page exists.
    """
    request = page.request

    def link(offset: int) -> dict[str, str]:
        return {"href": f"{url}?{urlencode({**query, 'offset': offset, 'count': request.count})}"}

    last_offset = max(0, (page.total - 1) // request.count * request.count) if request.count else 0
    links = {"self": link(request.offset), "first": link(0), "last": link(last_offset)}
    if request.offset + request.count < page.total:
        links["next"] = link(request.offset + request.count)
    if request.offset > 0:
        links["prev"] = link(max(0, request.offset - request.count))
    body: dict[str, Any] = {}
    if items:
        body["_embedded"] = {collection: items}
    body["_links"] = links
    body["page"] = {
        "offset": request.offset,
        "count": request.count,
        "size": request.count,
        "number": request.offset // request.count if request.count else 0,
        "totalElements": page.total,
        "totalPages": math.ceil(page.total / request.count) if request.count else 0,
    }
    return body


def variables_json(variables: list[Variable]) -> list[dict[str, Any]]:
    return [v.rest() for v in variables]


def model_json(row: dict, api: str) -> dict[str, Any]:
    return {
        "id": row["id"],
        "url": f"{api}/runtime/models/{row['id']}",
        "key": row["key"],
        "name": row["name"],
        "version": row["version"],
        "modelType": row["model_type"],
        "processDefinitionId": row["process_definition_id"],
        "deploymentId": row["deployment_id"],
        "startMessages": row["start_messages"],
        "tenantId": row["tenant_id"],
        "created": format_timestamp(row["created"]),
    }


def _duration_ms(start: float, end: float | None) -> int | None:
    return None if end is None else round((end - start) * 1000)


def instance_json(row: dict, api: str, variables: list[Variable] | None = None) -> dict[str, Any]:
    """A runtime process instance."""
    ended = row["end_time"] is not None
    body = {
        "id": row["id"],
        "url": f"{api}/process-instances/{row['id']}",
        "name": row["name"],
        "businessKey": row["business_key"],
        "suspended": bool(row["suspended"]),
        "ended": ended,
        "completed": ended and row["delete_reason"] is None,
        "processDefinitionId": row["process_definition_id"],
        "processDefinitionKey": row["process_definition_key"],
        "processDefinitionName": row["process_definition_name"],
        "processDefinitionVersion": row["process_definition_version"],
        "activityId": row["activity_id"],
        "startUserId": row["start_user_id"],
        "startTime": format_timestamp(row["start_time"]),
        "tenantId": row["tenant_id"],
    }
    if variables is not None:
        body["variables"] = variables_json(variables)
    return body


def historic_instance_json(row: dict, api: str, variables: list[Variable] | None = None) -> dict[str, Any]:
    body = {
        "id": row["id"],
        "url": f"{api}/historic-process-instances/{row['id']}",
        "name": row["name"],
        "businessKey": row["business_key"],
        "processDefinitionId": row["process_definition_id"],
        "processDefinitionKey": row["process_definition_key"],
        "processDefinitionName": row["process_definition_name"],
        "processDefinitionVersion": row["process_definition_version"],
        "startTime": format_timestamp(row["start_time"]),
        "endTime": format_timestamp(row["end_time"]),
        "durationInMillis": _duration_ms(row["start_time"], row["end_time"]),
        "startUserId": row["start_user_id"],
        "startActivityId": row["start_activity_id"],
        "endActivityId": row["end_activity_id"],
        "deleteReason": row["delete_reason"],
        "tenantId": row["tenant_id"],
    }
    if variables is not None:
        body["variables"] = variables_json(variables)
    return body


def _task_fields(row: dict) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "assignee": row["assignee"],
        "owner": row["owner"],
        "priority": row["priority"],
        "dueDate": format_timestamp(row["due_date"]),
        "claimTime": format_timestamp(row["claim_time"]),
        "taskDefinitionKey": row["task_definition_key"],
        "formKey": row["form_key"],
        "category": row["category"],
        "processInstanceId": row["process_instance_id"],
        "processDefinitionId": row["process_definition_id"],
        "candidateGroups": row["candidate_groups"],
        "candidateUsers": row["candidate_users"],
        "tenantId": row["tenant_id"],
    }


def _local_variables(row: dict) -> list[dict[str, Any]]:
    return list(row["local_variables"].values())


def task_json(
    row: dict, api: str, suspended: bool, variables: list[Variable] | None = None
) -> dict[str, Any]:
    """A runtime task; ``variables`` are the process variables (global) and the task's local ones."""
    body = {
        **_task_fields(row),
        "url": f"{api}/tasks/{row['id']}",
        "delegationState": row["delegation_state"],
        "createTime": format_timestamp(row["create_time"]),
        "suspended": suspended,
        "executionId": row["process_instance_id"],
        "processInstanceUrl": f"{api}/process-instances/{row['process_instance_id']}",
    }
    if variables is not None:
        body["variables"] = variables_json(variables) + _local_variables(row)
    return body


def historic_task_json(row: dict, api: str, variables: list[Variable] | None = None) -> dict[str, Any]:
    body = {
        **_task_fields(row),
        "url": f"{api}/historic-task-instances/{row['id']}",
        "startTime": format_timestamp(row["create_time"]),
        "endTime": format_timestamp(row["end_time"]),
        "durationInMillis": _duration_ms(row["create_time"], row["end_time"]),
        "deleteReason": row["delete_reason"],
        "outcome": row["outcome"],
    }
    if variables is not None:
        body["variables"] = variables_json(variables) + _local_variables(row)
    return body


def comment_json(row: dict, api: str) -> dict[str, Any]:
    return {
        "id": row["id"],
        "url": f"{api}/process-instances/{row['process_instance_id']}/comments/{row['id']}",
        "author": row["author"],
        "message": row["message"],
        "time": format_timestamp(row["time"]),
        "taskId": row["task_id"],
        "processInstanceId": row["process_instance_id"],
    }


def attachment_json(row: dict, api: str) -> dict[str, Any]:
    url = f"{api}/process-instances/{row['process_instance_id']}/attachments/{row['id']}"
    return {
        "id": row["id"],
        "url": url,
        "name": row["name"],
        "description": row["description"],
        "type": row["type"],
        "size": row["size"],
        "userId": row["user_id"],
        "time": format_timestamp(row["time"]),
        "taskId": row["task_id"],
        "processInstanceId": row["process_instance_id"],
        "contentUrl": f"{url}/content",
    }
