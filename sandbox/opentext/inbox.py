"""The reviewer inbox: server-rendered pages where a person signs in, lists open tasks, opens one with
its variables and comments, claims it and completes it with an outcome and a comment, always as
themselves: what the directory does not let them do is refused as the API refuses it (403).

Element ids are stable for browser tests: on ``/inbox/login`` ``#tenant``, ``#email``, ``#password``,
``#log-in``; on the list ``#signed-in``, ``#log-out``, ``#group``, ``#apply-filter``, ``#tasks`` rows
``#task-<id>`` with ``a.open-task``; on a task page ``#task-name``, ``#assignee``, ``#variables`` rows
``[data-variable=<name>]``, ``#comments``, ``#comment``, ``#claim``, the task form's fields
(``#form-fields``, by formKey: :mod:`sandbox.opentext.forms`) or else one button per outcome (``#approve``
for ``approved``, ``#reject`` for ``rejected``, ``#outcome-<value>`` otherwise) or ``#complete`` with a
free ``#outcome`` field, and ``#notice`` / ``#error`` messages. ``/inbox/requests/new`` (linked as
``#new-request``) is the form a business user submits an annotation request with: it starts an
``annotation_request_intake`` process by its message ``annotationRequest``, as that user, with the fields
``#title``, ``#source``, ``#task-type``, ``#labels``, ``#instructions``, ``#priority``, ``#due-date``,
``#approvers``, ``#annotators``, ``#annotations-per-task`` and ``#dataset`` (``#submit-request``); the
source is a location (``#source``) or a file uploaded with the form (``#source-file``), attached to the
process and named ``attachment:<file name>``. A task page lists its process's attachments
(``#attachments``, links ``a.attachment`` to ``/inbox/attachments/<process>/<id>``).
"""

from __future__ import annotations

import json
import re
from html import escape
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from sandbox.opentext.api import tenant_service
from sandbox.opentext.auth import AuthenticationFailed, OAuthError, Principal
from sandbox.opentext.clock import format_timestamp
from sandbox.opentext.errors import NotFound, ServiceError
from sandbox.opentext.forms import (
    SHOWN_BY_FORM,
    SUBMIT_BUTTON,
    SUBMITTING_FORMS,
    form_fields,
    submitted_variables,
)
from sandbox.opentext.service import MAX_ATTACHMENT_BYTES, PageRequest, WorkflowService

inbox_router = APIRouter(prefix="/inbox")
SESSION_COOKIE = "otws_inbox"
INBOX_PAGE_SIZE = 100
_BUTTON_IDS = {"approved": "approve", "rejected": "reject"}
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1d2733; }
table { border-collapse: collapse; margin: 1rem 0; } th, td { border: 1px solid #ccd; padding: .35rem .6rem;
text-align: left; vertical-align: top; } pre { margin: 0; white-space: pre-wrap; }
.notice { background: #e6f4ea; padding: .5rem; } .error { background: #fce8e6; padding: .5rem; }
form { margin: 1rem 0; } label { display: block; margin-top: .6rem; } textarea { width: 30rem; height: 5rem; }
button { margin: .6rem .4rem 0 0; padding: .4rem .9rem; } dt { font-weight: 600; } dd { margin: 0 0 .4rem 0; }
"""


def _html(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )
    return HTMLResponse(page, status_code=status_code)


def _messages(notice: str | None, error: str | None) -> str:
    parts = []
    if notice:
        parts.append(f'<p id="notice" class="notice">{escape(notice)}</p>')
    if error:
        parts.append(f'<p id="error" class="error">{escape(error)}</p>')
    return "".join(parts)


def _link(path: str, **query: str | None) -> str:
    given = {key: value for key, value in query.items() if value}
    return f"{path}?{urlencode(given)}" if given else path


class SignInNeeded(Exception):
    """No valid session: the page sends the browser to the sign-in form and back afterwards."""


def _signed_in(request: Request) -> tuple[Principal, WorkflowService]:
    """Who is signed in (their session's token, checked as the API checks it) and their tenant's service."""
    token = request.cookies.get(SESSION_COOKIE)
    try:
        principal = request.app.state.tokens.authenticate(f"Bearer {token}" if token else None)
        service = tenant_service(request, principal)
    except AuthenticationFailed:
        raise SignInNeeded from None
    service.fire_due_timers()
    return principal, service


def sign_in_redirect(request: Request, _: SignInNeeded) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(_link("/inbox/login", next=target), 303)


def _login_page(request: Request, next_page: str, error: str | None = None, status_code: int = 200):
    tenants = "".join(
        f'<option value="{escape(tenant)}">{escape(tenant)}</option>'
        for tenant in request.app.state.directory.tenants
    )
    body = (
        "<h1>Sign in to the reviewer inbox</h1>"
        + _messages(None, error)
        + '<form id="login-form" method="post" action="/inbox/login">'
        f'<input type="hidden" name="next" value="{escape(next_page)}">'
        f'<label for="tenant">Tenant</label><select id="tenant" name="tenant">{tenants}</select>'
        '<label for="email">E-mail</label><input id="email" name="email" type="email" required autofocus>'
        '<label for="password">Password</label><input id="password" name="password" type="password" required>'
        '<div><button id="log-in" type="submit">Sign in</button></div></form>'
    )
    return _html("Sign in", body, status_code)


def _safe_next(next_page: str) -> str:
    """Only a page of the inbox itself: a sign-in never sends the browser elsewhere."""
    return next_page if next_page.startswith("/inbox") and not next_page.startswith("//") else "/inbox"


@inbox_router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/inbox") -> HTMLResponse:
    return _login_page(request, _safe_next(next))


@inbox_router.post("/login")
def log_in(
    request: Request,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    tenant: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/inbox",
) -> Response:
    directory = request.app.state.directory
    try:
        token = request.app.state.tokens.log_in(tenant or directory.default_tenant, email.strip(), password)
    except OAuthError as refused:
        return _login_page(request, _safe_next(next), refused.description, 401)
    response = RedirectResponse(_safe_next(next), 303)
    response.set_cookie(
        SESSION_COOKIE, token["access_token"], max_age=token["expires_in"], httponly=True, samesite="strict"
    )
    return response


@inbox_router.post("/logout")
def log_out() -> Response:
    response = RedirectResponse("/inbox/login", 303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@inbox_router.get("", response_class=HTMLResponse)
def inbox(
    request: Request,
    group: str | None = None,
    notice: str | None = None,
    error: str | None = None,
) -> HTMLResponse:
    """Open tasks of a group (claimed or not), or else the user's tasks and the ones they may claim."""
    principal, service = _signed_in(request)
    user = principal.user
    if group:
        filters: dict[str, object] = {"candidateGroup": group, "ignoreAssignee": True}
    else:
        filters = {"candidateOrAssigned": user}
    page = service.list_tasks(
        filters, PageRequest(count=INBOX_PAGE_SIZE, sort="createTime", order="desc"), False
    )
    rows = "".join(
        f'<tr id="task-{escape(t["id"])}" data-task-id="{escape(t["id"])}">'
        f'<td><a class="open-task" href="{escape("/inbox/tasks/" + t["id"])}">'
        f"{escape(t['name'])}</a></td>"
        f'<td class="process">{escape(t["process_definition_key"])}</td>'
        f'<td class="business-key">{escape(t["business_key"] or "")}</td>'
        f'<td class="groups">{escape(", ".join(t["candidate_groups"]))}</td>'
        f'<td class="assignee">{escape(t["assignee"] or "")}</td>'
        f'<td class="created">{escape(format_timestamp(t["create_time"]) or "")}</td>'
        f'<td class="due">{escape(format_timestamp(t["due_date"]) or "")}</td></tr>'
        for t in page.rows
    )
    table = (
        '<table id="tasks"><thead><tr><th>Task</th><th>Process</th><th>Business key</th><th>Groups</th>'
        f"<th>Assignee</th><th>Created</th><th>Due</th></tr></thead><tbody>{rows}</tbody></table>"
        if page.rows
        else '<p id="no-tasks">No open tasks match.</p>'
    )
    body = (
        "<h1>Reviewer inbox</h1>"
        + _signed_in_bar(principal, service)
        + _messages(notice, error)
        + '<form id="filter" method="get" action="/inbox">'
        '<label for="group">Group (shows all of its open tasks; empty: yours and those you may claim)</label>'
        f'<input id="group" name="group" value="{escape(group or "")}">'
        '<button id="apply-filter" type="submit">Show tasks</button></form>'
        f'<p id="task-count">{page.total} open task(s)</p>'
        + table
        + '<p><a id="new-request" href="/inbox/requests/new">New annotation request</a></p>'
    )
    return _html("Reviewer inbox", body)


REQUEST_MESSAGE = "annotationRequest"
REQUEST_FIELDS = (
    ("title", "Title", "input", "What the annotation work is for"),
    (
        "source",
        "Source",
        "input",
        "A file in the intake folder (JSONL, CSV or plain text, one task per line)",
    ),
    ("source-file", "… or upload it", "file", "Attached to the request; takes the place of the Source"),
    ("task-type", "Task type", ("ner", "textcat", "choice"), ""),
    ("labels", "Labels", "input", "Comma-separated, e.g. BRAND, PRODUCT"),
    ("instructions", "Instructions", "textarea", "What annotators must do"),
    ("priority", "Priority", ("normal", "high", "urgent", "low"), ""),
    ("due-date", "Due date", "date", ""),
    ("approvers", "Approvers", "input", "E-mails of the data owners asked to approve"),
    ("annotators", "Annotators", "input", "E-mails of the team, comma-separated"),
    ("annotations-per-task", "Annotations per task", "number", ""),
    ("dataset", "Dataset (optional)", "input", "Prodigy dataset name; empty: made from the title"),
)
LIST_FIELDS = ("labels", "approvers", "annotators")


def _request_field(field: str, label: str, kind: str | tuple[str, ...], hint: str, value: str) -> str:
    attributes = f'id="{field}" name="{field}"'
    if isinstance(kind, tuple):
        options = "".join(
            f'<option value="{o}"{" selected" if o == value else ""}>{o}</option>' for o in kind
        )
        control = f"<select {attributes}>{options}</select>"
    elif kind == "textarea":
        control = f"<textarea {attributes}>{escape(value)}</textarea>"
    elif kind == "file":
        control = f'<input {attributes} type="file" accept=".jsonl,.json,.csv,.txt">'
    else:
        extra = ' min="1"' if kind == "number" else ""
        shown = "text" if kind == "input" else kind
        control = f'<input {attributes} type="{shown}"{extra} value="{escape(value)}">'
    return f'<label for="{field}">{label}</label>{control}' + (
        f"<small>{escape(hint)}</small>" if hint else ""
    )


def _request_page(
    principal: Principal,
    service: WorkflowService,
    form: dict[str, str],
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    defaults = {"annotations-per-task": "1", **form}
    fields = "".join(
        _request_field(f, label, kind, hint, defaults.get(f, "")) for f, label, kind, hint in REQUEST_FIELDS
    )
    body = (
        "<h1>New annotation request</h1>"
        + _signed_in_bar(principal, service)
        + _messages(None, error)
        + '<form id="request-form" method="post" action="/inbox/requests/new" enctype="multipart/form-data">'
        + f"{fields}"
        '<button id="submit-request" type="submit">Submit request</button></form>'
        '<a id="back" href="/inbox">Back to inbox</a>'
    )
    return _html("New annotation request", body, status_code)


@inbox_router.get("/requests/new", response_class=HTMLResponse)
def new_request_page(request: Request) -> HTMLResponse:
    principal, service = _signed_in(request)
    return _request_page(principal, service, {})


@inbox_router.post("/requests/new")
async def submit_request(request: Request) -> Response:
    """Start the request's intake process as the signed-in user, by the model's start message; an
    uploaded source is attached to the process."""
    submitted = await request.form()
    form = {key: value for key, value in submitted.items() if isinstance(value, str)}
    upload = submitted.get("source-file")
    source_file = None
    if upload is not None and not isinstance(upload, str) and upload.filename:
        source_file = (upload.filename, await upload.read(), upload.content_type)
    return await run_in_threadpool(_submit_request, request, form, source_file)


def _submit_request(
    request: Request, form: dict[str, str], source_file: tuple[str, bytes, str | None] | None
) -> Response:
    principal, service = _signed_in(request)
    if source_file is not None:
        if len(source_file[1]) > MAX_ATTACHMENT_BYTES:
            error = f"The file is {len(source_file[1])} bytes; attach at most {MAX_ATTACHMENT_BYTES}."
            return _request_page(principal, service, form, error, 400)
        form = {**form, "source": f"attachment:{source_file[0]}"}
    missing = [
        label
        for f, label, _, _ in REQUEST_FIELDS
        if f in ("title", "source", "labels", "annotators") and not form.get(f, "").strip()
    ]
    if missing:
        return _request_page(principal, service, form, f"Fill in: {', '.join(missing)}.", 400)
    variables: list[dict[str, Any]] = []
    for field, _, kind, _ in REQUEST_FIELDS:
        if kind == "file":
            continue
        value = form.get(field, "").strip()
        name = field.replace("-", "_")
        if field in LIST_FIELDS:
            variables.append(
                {"name": name, "type": "json", "value": [v.strip() for v in value.split(",") if v.strip()]}
            )
        elif kind == "number":
            variables.append({"name": name, "type": "integer", "value": int(value or 1)})
        elif value:
            variables.append({"name": name, "type": "string", "value": value})
    try:
        instance = service.start_instance(
            message=REQUEST_MESSAGE,
            business_key=f"request:{form['title'].strip()[:60]}",
            name=f"Annotation request: {form['title'].strip()}",
            variables=variables,
            user=principal.user,
            tenant_id=principal.tenant_id,
        )
        if source_file is not None:
            name, content, content_type = source_file
            service.add_attachment(instance["id"], name, content, content_type, principal.user)
    except ServiceError as failure:
        return _request_page(principal, service, form, failure.exception, failure.status)
    done = f"Request “{form['title'].strip()}” submitted ({instance['id']}): the data owners decide on it."
    return RedirectResponse(_link("/inbox", notice=done), 303)


def _signed_in_bar(principal: Principal, service: WorkflowService) -> str:
    groups = ", ".join(service.groups_of(principal.user)) or "no groups"
    return (
        f'<p id="signed-in">Signed in as <strong>{escape(principal.user)}</strong> ({escape(groups)}) '
        f"on tenant {escape(principal.tenant_id)}</p>"
        '<form method="post" action="/inbox/logout">'
        '<button id="log-out" type="submit">Sign out</button></form>'
    )


def _outcome_controls(outcomes: list[str]) -> str:
    if not outcomes:
        return (
            '<label for="outcome">Outcome (optional)</label><input id="outcome" name="outcome">'
            '<button id="complete" type="submit" name="action" value="complete">Complete</button>'
        )
    buttons = []
    for outcome in outcomes:
        button_id = _BUTTON_IDS.get(outcome, "outcome-" + re.sub(r"[^A-Za-z0-9_-]+", "-", outcome))
        label = {"approved": "Approve", "rejected": "Reject"}.get(outcome, outcome.replace("_", " ").title())
        buttons.append(
            f'<button id="{escape(button_id)}" class="outcome" type="submit" name="outcome" '
            f'value="{escape(outcome)}">{escape(label)}</button>'
        )
    return "".join(buttons)


def _task_page(
    principal: Principal,
    service: WorkflowService,
    task_id: str,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    user = principal.user
    try:
        task = service.runtime_task(task_id)
    except NotFound:
        body = (
            "<h1>Task not open</h1>"
            + _messages(notice, error or f"Task {task_id} is not open any more.")
            + '<a id="back" href="/inbox">Back to inbox</a>'
        )
        return _html("Task not open", body, 404)
    process_variables = service.variables_of(task["process_instance_id"])
    values = {v.name: v.value for v in process_variables}
    fields = form_fields(task["form_key"], values)
    submits = fields is not None and task["form_key"] in SUBMITTING_FORMS
    shown_by_form = SHOWN_BY_FORM.get(task["form_key"], frozenset())
    variables = "".join(
        f'<tr data-variable="{escape(v.name)}"><th>{escape(v.name)}</th>'
        f'<td class="type">{escape(v.type)}</td>'
        f'<td class="value"><pre>{escape(json.dumps(v.value, indent=2, ensure_ascii=False))}</pre></td></tr>'
        for v in process_variables
        if v.name not in shown_by_form
    )
    comments = "".join(
        f'<li class="comment" data-author="{escape(c["author"] or "")}"><span class="author">'
        f"{escape(c['author'] or '')}</span> <time>{escape(format_timestamp(c['time']) or '')}</time>"
        f"<p>{escape(c['message'])}</p></li>"
        for c in service.comments(task["process_instance_id"])
    )
    attachments = "".join(
        f'<li><a class="attachment" href="/inbox/attachments/{escape(a["process_instance_id"])}/'
        f'{escape(a["id"])}">{escape(a["name"])}</a> ({a["size"]} bytes, {escape(a["type"])}, by '
        f"{escape(a['user_id'] or '')})</li>"
        for a in service.attachments(task["process_instance_id"])
    )
    details = {
        "task-id": task["id"],
        "process-key": task["process_definition_key"],
        "business-key": task["business_key"],
        "assignee": task["assignee"],
        "candidate-groups": ", ".join(task["candidate_groups"]),
        "created": format_timestamp(task["create_time"]),
        "due-date": format_timestamp(task["due_date"]),
        "priority": str(task["priority"]),
        "form-key": task["form_key"],
    }
    detail_list = "".join(
        f'<dt>{escape(key.replace("-", " ").capitalize())}</dt><dd id="{key}">{escape(value or "")}</dd>'
        for key, value in details.items()
    )
    claim = (
        '<button id="claim" type="submit" name="action" value="claim">Claim</button>'
        if task["assignee"] is None or task["assignee"] != user
        else ""
    )
    body = (
        f'<h1 id="task-name">{escape(task["name"])}</h1>'
        + _signed_in_bar(principal, service)
        + _messages(notice, error)
        + f'<p id="task-description">{escape(task["description"] or "")}</p>'
        f'<dl id="task-details">{detail_list}</dl>'
        f'<h2>Variables</h2><table id="variables"><tbody>{variables}</tbody></table>'
        f'<h2>Attachments</h2><ul id="attachments">{attachments}</ul>'
        f'<h2>Comments</h2><ul id="comments">{comments}</ul>'
        f'<form id="task-form" method="post" action="/inbox/tasks/{escape(task_id)}">'
        + (f'<div id="form-fields">{fields}</div>' if fields else "")
        + '<label for="comment">Comment</label><textarea id="comment" name="comment"></textarea>'
        f"<div>{claim}{SUBMIT_BUTTON if submits else _outcome_controls(task['outcomes'])}</div></form>"
        '<a id="back" href="/inbox">Back to inbox</a>'
    )
    return _html(task["name"], body, status_code)


@inbox_router.get("/attachments/{instance_id}/{attachment_id}")
def attachment(instance_id: str, attachment_id: str, request: Request) -> Response:
    """An attachment's content, as a download named as it was attached."""
    _, service = _signed_in(request)
    row, content = service.attachment_content(instance_id, attachment_id)
    disposition = f"attachment; filename*=UTF-8''{quote(row['name'])}"
    return Response(content, media_type=row["type"], headers={"Content-Disposition": disposition})


@inbox_router.get("/tasks/{task_id}", response_class=HTMLResponse)
def task_page(
    task_id: str, request: Request, notice: str | None = None, error: str | None = None
) -> HTMLResponse:
    principal, service = _signed_in(request)
    return _task_page(principal, service, task_id, notice, error)


@inbox_router.post("/tasks/{task_id}")
async def act_on_task(task_id: str, request: Request) -> Response:
    """Claim, or complete with the outcome (or the task form's fields) and comment, claiming first if
    unclaimed, as the signed-in user."""
    form = {key: value for key, value in (await request.form()).items() if isinstance(value, str)}
    return await run_in_threadpool(_act_on_task, task_id, request, form)


def _act_on_task(task_id: str, request: Request, form: dict[str, str]) -> Response:
    principal, service = _signed_in(request)
    user = principal.user
    action, outcome, comment = form.get("action", ""), form.get("outcome", ""), form.get("comment", "")
    try:
        if action == "claim":
            service.claim_task(task_id, user, user)
            return RedirectResponse(_link(f"/inbox/tasks/{task_id}", notice=f"Claimed by {user}."), 303)
        task = service.runtime_task(task_id)
        if task["assignee"] not in (None, user):
            return _task_page(
                principal,
                service,
                task_id,
                error=f"This task is claimed by {task['assignee']}.",
                status_code=409,
            )
        values = {v.name: v.value for v in service.variables_of(task["process_instance_id"])}
        variables, missing = submitted_variables(task["form_key"], values, form)
        if missing:
            return _task_page(principal, service, task_id, error="; ".join(missing), status_code=400)
        if action == "decide":
            outcome = "decided"
        if task["assignee"] is None:
            service.claim_task(task_id, user, user)
        if comment.strip():  # before completing: whoever reads the decision sees its comment
            service.add_comment(task["process_instance_id"], comment.strip(), user, task_id)
        service.complete_task(task_id, outcome.strip() or None, variables, user)
    except ServiceError as failure:
        return _task_page(principal, service, task_id, error=failure.exception, status_code=failure.status)
    done = f"Completed “{task['name']}”" + (f" with outcome {outcome.strip()}." if outcome.strip() else ".")
    return RedirectResponse(_link("/inbox", notice=done), 303)
