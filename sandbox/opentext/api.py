"""The OpenText Workflow Service REST API under ``/workflow/v1``: models, process instances, variables,
comments, attachments, tasks, history and the identity of users and groups. Every call needs a bearer
token and acts as the token's user, on the token's tenant; each one also fires timers that are due."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from sandbox.opentext import representations as rep
from sandbox.opentext.auth import AuthenticationFailed, Principal
from sandbox.opentext.errors import BadRequest, Forbidden, NotFound
from sandbox.opentext.service import Page, PageRequest, WorkflowService

API_PREFIX = "/workflow/v1"


@dataclass(frozen=True)
class Caller:
    """The authenticated caller of one request: who (the token's user) and on which tenant's service."""

    principal: Principal
    api: str
    service: WorkflowService
    query: dict[str, str]

    def flag(self, name: str) -> bool | None:
        """A boolean query parameter: None when absent, 400 when it is not true/false."""
        value = self.query.get(name)
        if value is None:
            return None
        if value.lower() not in ("true", "false"):
            raise BadRequest(f"query parameter '{name}' must be true or false, got '{value}'")
        return value.lower() == "true"

    def filters(self, names: tuple[str, ...], flags: tuple[str, ...] = ()) -> dict[str, Any]:
        found: dict[str, Any] = {name: self.query[name] for name in names if name in self.query}
        found.update({name: self.flag(name) for name in flags if name in self.query})
        return found


def tenant_service(request: Request, principal: Principal) -> WorkflowService:
    """The service of the tenant the token was issued for: a token reaches that tenant's data only."""
    service: WorkflowService | None = request.app.state.services.get(principal.tenant_id)
    if service is None:
        raise AuthenticationFailed("Invalid Access Token", "keymanagement.service.invalid_access_token")
    return service


def caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> Caller:
    principal = request.app.state.tokens.authenticate(authorization)
    service = tenant_service(request, principal)
    service.fire_due_timers()
    return Caller(
        principal=principal,
        api=str(request.base_url).rstrip("/") + API_PREFIX,
        service=service,
        query=dict(request.query_params),
    )


def page_request(
    offset: Annotated[int, Query()] = 0,
    count: Annotated[int, Query()] = 10,
    sort: Annotated[str | None, Query()] = None,
    order: Annotated[str, Query()] = "asc",
) -> PageRequest:
    return PageRequest(offset=offset, count=count, sort=sort, order=order)


CallerOf = Annotated[Caller, Depends(caller)]
Paging = Annotated[PageRequest, Depends(page_request)]
JsonObject = Annotated[dict[str, Any], Body()]
JsonBody = Annotated[Any, Body()]


def _list_query(call: Caller) -> dict[str, str]:
    return {k: v for k, v in call.query.items() if k not in ("offset", "count")}


router = APIRouter(prefix=API_PREFIX)

# -- models ---------------------------------------------------------------------------------------


@router.post("/runtime/models", status_code=201)
def deploy_model(body: JsonObject, call: CallerOf) -> dict:
    row = call.service.deploy_model(
        body.get("modelContent"), body.get("modelType"), body.get("modelId"), call.principal.tenant_id
    )
    return rep.model_json(row, call.api)


@router.get("/runtime/models")
def list_models(call: CallerOf, paging: Paging) -> dict:
    page = call.service.list_models(call.query.get("key"), bool(call.flag("latestVersion")), paging)
    items = [rep.model_json(row, call.api) for row in page.rows]
    return rep.hal_page("models", items, page, f"{call.api}/runtime/models", _list_query(call))


@router.get("/runtime/models/{model_id}")
def get_model(model_id: str, call: CallerOf) -> dict:
    row = call.service.model(model_id)
    return {**rep.model_json(row, call.api), "modelContent": row["content"]}


# -- process instances ----------------------------------------------------------------------------


def _instance_json(call: Caller, row: dict, with_variables: bool) -> dict:
    variables = call.service.variables_of(row["id"]) if with_variables else None
    return rep.instance_json(row, call.api, variables)


@router.post("/process-instances", status_code=201)
def start_instance(body: JsonObject, call: CallerOf) -> dict:
    row = call.service.start_instance(
        process_definition_key=body.get("processDefinitionKey"),
        process_definition_id=body.get("processDefinitionId"),
        message=body.get("message"),
        business_key=body.get("businessKey"),
        name=body.get("name"),
        variables=body.get("variables"),
        user=call.principal.user,
        tenant_id=call.principal.tenant_id,
    )
    return _instance_json(call, row, bool(body.get("returnVariables")))


@router.get("/process-instances")
def list_instances(call: CallerOf, paging: Paging) -> dict:
    filters = call.filters(
        ("id", "processDefinitionKey", "processDefinitionId", "businessKey", "startedBy", "tenantId"),
        ("suspended",),
    )
    page = call.service.list_instances(filters, paging, finished=False)
    with_variables = bool(call.flag("includeProcessVariables"))
    items = [_instance_json(call, row, with_variables) for row in page.rows]
    return rep.hal_page("processInstances", items, page, f"{call.api}/process-instances", _list_query(call))


@router.get("/process-instances/{instance_id}")
def get_instance(instance_id: str, call: CallerOf) -> dict:
    row = call.service.running_instance(instance_id)
    return _instance_json(call, row, bool(call.flag("includeProcessVariables")))


@router.put("/process-instances/{instance_id}")
def change_instance(instance_id: str, body: JsonObject, call: CallerOf) -> dict:
    return _instance_json(call, call.service.set_suspended(instance_id, body.get("action")), False)


@router.delete("/process-instances/{instance_id}", status_code=204)
def delete_instance(instance_id: str, call: CallerOf) -> Response:
    call.service.delete_instance(instance_id, call.query.get("deleteReason"))
    return Response(status_code=204)


# -- variables ------------------------------------------------------------------------------------


@router.get("/process-instances/{instance_id}/variables")
def list_variables(instance_id: str, call: CallerOf) -> list:
    return rep.variables_json(call.service.runtime_variables(instance_id))


@router.post("/process-instances/{instance_id}/variables", status_code=201)
def create_variables(instance_id: str, body: JsonBody, call: CallerOf) -> list:
    return rep.variables_json(call.service.create_variables(instance_id, body))


@router.put("/process-instances/{instance_id}/variables")
def set_variables(instance_id: str, body: JsonBody, call: CallerOf) -> list:
    return rep.variables_json(call.service.set_variables(instance_id, body))


@router.get("/process-instances/{instance_id}/variables/{name}")
def get_variable(instance_id: str, name: str, call: CallerOf) -> dict:
    for variable in call.service.runtime_variables(instance_id):
        if variable.name == name:
            return variable.rest()
    raise NotFound(f"Process instance '{instance_id}' does not have a variable with name: '{name}'.")


@router.put("/process-instances/{instance_id}/variables/{name}")
def set_variable(instance_id: str, name: str, body: JsonBody, call: CallerOf) -> dict:
    return call.service.set_variable(instance_id, name, body).rest()


# -- comments -------------------------------------------------------------------------------------


@router.get("/process-instances/{instance_id}/comments")
def list_comments(instance_id: str, call: CallerOf) -> list:
    return [rep.comment_json(row, call.api) for row in call.service.comments(instance_id)]


@router.post("/process-instances/{instance_id}/comments", status_code=201)
def add_comment(instance_id: str, body: JsonObject, call: CallerOf) -> dict:
    row = call.service.add_comment(instance_id, body.get("message"), call.principal.user, body.get("taskId"))
    return rep.comment_json(row, call.api)


# -- attachments ----------------------------------------------------------------------------------


@router.get("/process-instances/{instance_id}/attachments")
def list_attachments(instance_id: str, call: CallerOf) -> list:
    return [rep.attachment_json(row, call.api) for row in call.service.attachments(instance_id)]


@router.post("/process-instances/{instance_id}/attachments", status_code=201)
async def add_attachment(instance_id: str, request: Request, call: CallerOf) -> dict:
    """Multipart: ``file`` (its file name is the attachment's unless ``name`` is given), ``description``,
    ``type`` (else the file part's content type)."""
    form = await request.form()
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise BadRequest("Send the attachment as multipart/form-data with a 'file' part")
    content = await upload.read()
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    row = await run_in_threadpool(
        call.service.add_attachment,
        instance_id,
        fields.get("name") or upload.filename,
        content,
        fields.get("type") or upload.content_type,
        call.principal.user,
        fields.get("description"),
        fields.get("taskId"),
    )
    return rep.attachment_json(row, call.api)


@router.get("/process-instances/{instance_id}/attachments/{attachment_id}")
def get_attachment(instance_id: str, attachment_id: str, call: CallerOf) -> dict:
    return rep.attachment_json(call.service.attachment(instance_id, attachment_id), call.api)


@router.get("/process-instances/{instance_id}/attachments/{attachment_id}/content")
def attachment_content(instance_id: str, attachment_id: str, call: CallerOf) -> Response:
    row, content = call.service.attachment_content(instance_id, attachment_id)
    return Response(content, media_type=row["type"])


# -- tasks ----------------------------------------------------------------------------------------

TASK_FILTERS = (
    "processInstanceId",
    "processDefinitionKey",
    "processDefinitionId",
    "processInstanceBusinessKey",
    "businessKey",
    "assignee",
    "owner",
    "candidateGroup",
    "candidateUser",
    "candidateOrAssigned",
    "name",
    "nameLike",
    "taskDefinitionKey",
)


@router.get("/tasks")
def list_tasks(call: CallerOf, paging: Paging) -> dict:
    page = call.service.list_tasks(
        call.filters(TASK_FILTERS, ("unassigned", "ignoreAssignee")), paging, finished=False
    )
    with_variables = bool(call.flag("includeProcessVariables"))
    items = [
        rep.task_json(
            row,
            call.api,
            call.service.is_suspended(row),
            call.service.variables_of(row["process_instance_id"]) if with_variables else None,
        )
        for row in page.rows
    ]
    return rep.hal_page("tasks", items, page, f"{call.api}/tasks", _list_query(call))


@router.get("/tasks/{task_id}")
def get_task(task_id: str, call: CallerOf) -> dict:
    row = call.service.runtime_task(task_id)
    variables = call.service.variables_of(row["process_instance_id"])
    return rep.task_json(row, call.api, call.service.is_suspended(row), variables)


@router.post("/tasks/{task_id}")
def act_on_task(task_id: str, body: JsonObject, call: CallerOf) -> Response:
    """``claim`` (assignee; null unclaims), ``complete`` (outcome, variables), ``delegate``, ``resolve``."""
    action, user = body.get("action"), call.principal.user
    if action == "claim":
        call.service.claim_task(task_id, body.get("assignee"), user)
    elif action == "delegate":
        call.service.delegate_task(task_id, body.get("assignee"), user)
    elif action == "resolve":
        call.service.resolve_task(task_id, user)
    elif action == "complete":
        if body.get("assignee") not in (None, user):
            raise Forbidden(f"User '{user}' cannot complete task '{task_id}' as '{body['assignee']}'")
        call.service.complete_task(task_id, body.get("outcome"), body.get("variables"), user)
    else:
        raise BadRequest(f"Invalid action: '{action}'. Use claim, complete, delegate or resolve")
    return Response(status_code=200)


# -- history --------------------------------------------------------------------------------------


@router.get("/historic-process-instances")
def list_historic_instances(call: CallerOf, paging: Paging) -> dict:
    filters = call.filters(
        (
            "processInstanceId",
            "processDefinitionKey",
            "processDefinitionId",
            "businessKey",
            "startedBy",
            "tenantId",
        )
    )
    page = call.service.list_instances(filters, paging, finished=call.flag("finished"))
    with_variables = bool(call.flag("includeProcessVariables"))
    items = [
        rep.historic_instance_json(
            row, call.api, call.service.variables_of(row["id"]) if with_variables else None
        )
        for row in page.rows
    ]
    url = f"{call.api}/historic-process-instances"
    return rep.hal_page("historicProcessInstances", items, page, url, _list_query(call))


@router.get("/historic-process-instances/{instance_id}")
def get_historic_instance(instance_id: str, call: CallerOf) -> dict:
    row = call.service.historic_instance(instance_id)
    return rep.historic_instance_json(row, call.api, call.service.variables_of(instance_id))


HISTORIC_TASK_FILTERS = (
    "taskId",
    "processInstanceId",
    "processDefinitionKey",
    "processDefinitionId",
    "businessKey",
    "processBusinessKey",
    "taskAssignee",
    "taskOwner",
    "taskName",
    "taskNameLike",
    "taskDefinitionKey",
)


@router.get("/historic-task-instances")
def list_historic_tasks(call: CallerOf, paging: Paging) -> dict:
    page = call.service.list_tasks(
        call.filters(HISTORIC_TASK_FILTERS), paging, finished=call.flag("finished")
    )
    with_variables = bool(call.flag("includeProcessVariables"))
    with_local = bool(call.flag("includeTaskLocalVariables"))
    items = [
        rep.historic_task_json(
            row,
            call.api,
            call.service.variables_of(row["process_instance_id"])
            if with_variables
            else ([] if with_local else None),
        )
        for row in page.rows
    ]
    url = f"{call.api}/historic-task-instances"
    return rep.hal_page("historicTaskInstances", items, page, url, _list_query(call))


@router.get("/historic-task-instances/{task_id}")
def get_historic_task(task_id: str, call: CallerOf) -> dict:
    return rep.historic_task_json(call.service.historic_task(task_id), call.api)


# -- identity -------------------------------------------------------------------------------------


@router.get("/identity/groups")
def list_groups(call: CallerOf, paging: Paging, member: Annotated[str, Query()]) -> dict:
    """The groups ``member`` belongs to in the caller's tenant (Flowable's ``identity/groups?member=``)."""
    groups = [{"id": group, "name": group, "type": "assignment"} for group in call.service.groups_of(member)]
    rows = groups[paging.offset : paging.offset + paging.count]
    url = f"{call.api}/identity/groups"
    return rep.hal_page("groups", rows, Page(rows, len(groups), paging), url, _list_query(call))
