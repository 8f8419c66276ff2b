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
(``#attachments``, links ``a.attachment`` to ``/inbox/attachments/<process>/<id>``: HTML opens inline under
:data:`ATTACHMENT_POLICY`, anything else downloads).

History: a task that is no longer open shows its decision (``#decision``, ``#decision-outcome``,
``#decision-by``, ``#decision-time``, ``#decision-comments``) above its process's history, which
``/inbox/processes/<id>`` (``#process-history`` on a task page) shows alone: ``#process-details`` with
``#process-state``, ``#history`` rows ``tr.history-task[data-task-id]``, ``#process-comments``. The list's
``#recent`` rows (``#recent-<id>``, ``a.open-history``) are the latest closed tasks. Variable values are
shown by :func:`sandbox.opentext.readable.readable`, never as JSON.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import escape
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from sandbox.opentext.api import tenant_service
from sandbox.opentext.auth import AuthenticationFailed, OAuthError, Principal
from sandbox.opentext.errors import NotFound, ServiceError
from sandbox.opentext.forms import (
    SHOWN_BY_FORM,
    SUBMIT_BUTTON,
    SUBMITTING_FORMS,
    form_fields,
    submitted_variables,
)
from sandbox.opentext.readable import label, readable
from sandbox.opentext.service import MAX_ATTACHMENT_BYTES, PageRequest, WorkflowService
from sandbox.opentext.variables import Variable

inbox_router = APIRouter(prefix="/inbox")
SESSION_COOKIE = "otws_inbox"
INBOX_PAGE_SIZE = 100
RECENT_DECISIONS = 10
INLINE_TYPES = frozenset({"text/html", "application/xhtml+xml"})
ATTACHMENT_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; sandbox"
)
"""What an HTML attachment may do in the reviewer's browser: show itself with its inline styles and
images, nothing else (no scripts, forms, requests or access to the inbox's origin)."""
_BUTTON_IDS = {"approved": "approve", "rejected": "reject"}
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1d2733; }
table { border-collapse: collapse; margin: 1rem 0; } th, td { border: 1px solid #ccd; padding: .35rem .6rem;
text-align: left; vertical-align: top; } pre { margin: 0; white-space: pre-wrap; }
.notice { background: #e6f4ea; padding: .5rem; } .error { background: #fce8e6; padding: .5rem; }
form { margin: 1rem 0; } label { display: block; margin-top: .6rem; } textarea { width: 30rem; height: 5rem; }
button { margin: .6rem .4rem 0 0; padding: .4rem .9rem; } dt { font-weight: 600; } dd { margin: 0 0 .4rem 0; }
td table { margin: 0; } td th { background: #f4f6f9; font-weight: 500; }
ul.values { margin: 0; padding-left: 1.1rem; } .text { white-space: pre-wrap; } .none, .more { color: #667; }
td.task-comments ul { margin: 0; padding: 0; list-style: none; } td.task-comments p { margin: .1rem 0 .4rem; }
section#decision { background: #eef3fb; padding: .2rem 1rem .6rem; } tr.this-task { background: #eef3fb; }
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


def _moment(epoch_seconds: float | None) -> str | None:
    """A time as people read it, in UTC (the API's own format is for programs)."""
    if epoch_seconds is None:
        return None
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


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
        f'<td class="created">{escape(_moment(t["create_time"]) or "")}</td>'
        f'<td class="due">{escape(_moment(t["due_date"]) or "")}</td></tr>'
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
        + _recent_decisions(
            service, {"candidateGroup": group, "ignoreAssignee": True} if group else {"assignee": user}
        )
    )
    return _html("Reviewer inbox", body)


def _recent_decisions(service: WorkflowService, filters: dict[str, object]) -> str:
    """History: the latest closed tasks of the group, or else the ones the user decided, each linking to
    its decision and its process's history."""
    page = service.list_tasks(
        filters, PageRequest(count=RECENT_DECISIONS, sort="endTime", order="desc"), finished=True
    )
    rows = "".join(
        f'<tr id="recent-{escape(t["id"])}" data-task-id="{escape(t["id"])}">'
        f'<td><a class="open-history" href="/inbox/tasks/{quote(t["id"])}">{escape(t["name"])}</a></td>'
        f'<td class="business-key">{escape(t["business_key"] or "")}</td>'
        f'<td class="assignee">{escape(t["assignee"] or "")}</td>'
        f'<td class="outcome">{escape(_how_ended(t))}</td>'
        f'<td class="ended">{escape(_moment(t["end_time"]) or "")}</td></tr>'
        for t in page.rows
    )
    table = (
        '<table id="recent"><thead><tr><th>Task</th><th>Business key</th><th>Decided by</th><th>Outcome</th>'
        f"<th>Ended</th></tr></thead><tbody>{rows}</tbody></table>"
        if page.rows
        else '<p id="no-recent">Nothing decided yet.</p>'
    )
    return f"<h2>History: recently closed</h2>{table}"


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


def _comment_items(comments: list[dict]) -> str:
    return "".join(
        f'<li class="comment" data-author="{escape(c["author"] or "")}"><span class="author">'
        f"{escape(c['author'] or '')}</span> <time>{escape(_moment(c['time']) or '')}</time>"
        f"<p>{escape(c['message'])}</p></li>"
        for c in comments
    )


def _size(size: int) -> str:
    if size < 1000:
        return f"{size} bytes"
    return f"{size / 1000:.1f} kB" if size < 1_000_000 else f"{size / 1_000_000:.1f} MB"


def _opens_in_browser(content_type: str) -> bool:
    """HTML attachments (review reports, dataset cards) open in the browser, sandboxed; others download."""
    return content_type.split(";")[0].strip().lower() in INLINE_TYPES


def _attachments_table(attachments: list[dict]) -> str:
    if not attachments:
        return '<p id="no-attachments">No attachments.</p>'
    rows = []
    for a in attachments:
        href = f"/inbox/attachments/{quote(a['process_instance_id'])}/{quote(a['id'])}"
        new_tab = ' target="_blank" rel="noopener"' if _opens_in_browser(a["type"]) else ""
        rows.append(
            f'<tr data-attachment="{escape(a["name"])}">'
            f'<td><a class="attachment" href="{href}"{new_tab}>{escape(a["name"])}</a></td>'
            f'<td class="type">{escape(a["type"])}</td><td class="size">{_size(a["size"])}</td>'
            f'<td class="added">{escape(a["user_id"] or "")} '
            f"<time>{escape(_moment(a['time']) or '')}</time></td>"
            f'<td class="description">{escape(a["description"] or "")}</td></tr>'
        )
    return (
        '<table id="attachments"><thead><tr><th>Name</th><th>Type</th><th>Size</th><th>Added by</th>'
        f"<th>Description</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _variables_table(variables: list[Variable], left_out: frozenset[str] = frozenset()) -> str:
    rows = "".join(
        f'<tr data-variable="{escape(v.name)}"><th>{escape(label(v.name))}</th>'
        f'<td class="value">{readable(v.value)}</td></tr>'
        for v in variables
        if v.name not in left_out
    )
    return f'<table id="variables"><tbody>{rows}</tbody></table>'


def _details(details: dict[str, str | None], list_id: str, labels: dict[str, str] | None = None) -> str:
    """A definition list, each value's element id its key; its label the key read as words, or
    ``labels[key]``."""
    items = "".join(
        f"<dt>{escape((labels or {}).get(key) or key.replace('-', ' ').capitalize())}</dt>"
        f'<dd id="{key}">{escape(value or "")}</dd>'
        for key, value in details.items()
    )
    return f'<dl id="{list_id}">{items}</dl>'


def _not_found_page(principal: Principal, service: WorkflowService, message: str) -> HTMLResponse:
    body = (
        "<h1>Not found</h1>"
        + _signed_in_bar(principal, service)
        + _messages(None, message)
        + '<a id="back" href="/inbox">Back to inbox</a>'
    )
    return _html("Not found", body, 404)


def _task_page(
    principal: Principal,
    service: WorkflowService,
    task_id: str,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
    comment: str = "",
) -> HTMLResponse:
    """An open task with its form (``comment`` already in its field); a task that is no longer open
    shows its decision in its process's history (:func:`_history_page`)."""
    user = principal.user
    try:
        task = service.runtime_task(task_id)
    except NotFound:
        try:
            ended = service.historic_task(task_id)
        except NotFound:
            return _not_found_page(principal, service, error or f"There is no task {task_id}.")
        process_id = ended["process_instance_id"]
        return _history_page(principal, service, process_id, ended, notice, error, status_code)
    process_id = task["process_instance_id"]
    fields = form_fields(task["form_key"], service.variable_values(process_id))
    submits = fields is not None and task["form_key"] in SUBMITTING_FORMS
    details = {
        "task-id": task["id"],
        "process-key": task["process_definition_key"],
        "business-key": task["business_key"],
        "assignee": task["assignee"],
        "candidate-groups": ", ".join(task["candidate_groups"]),
        "created": _moment(task["create_time"]),
        "due-date": _moment(task["due_date"]),
        "priority": str(task["priority"]),
        "form-key": task["form_key"],
    }
    claim = (
        '<button id="claim" type="submit" name="action" value="claim">Claim</button>'
        if task["assignee"] is None or task["assignee"] != user
        else ""
    )
    shown_by_form = SHOWN_BY_FORM.get(task["form_key"], frozenset())
    comments = service.comments(process_id)
    body = (
        f'<h1 id="task-name">{escape(task["name"])}</h1>'
        + _signed_in_bar(principal, service)
        + _messages(notice, error)
        + f'<p id="task-description">{escape(task["description"] or "")}</p>'
        + _details(details, "task-details")
        + f'<p><a id="process-history" href="/inbox/processes/{quote(process_id)}">'
        "History of this process</a></p>"
        "<h2>Variables</h2>"
        + _variables_table(service.variables_of(process_id), shown_by_form)
        + "<h2>Attachments</h2>"
        + _attachments_table(service.attachments(process_id))
        + f'<h2>Comments</h2><ul id="comments">{_comment_items(comments) or "<li>None yet.</li>"}</ul>'
        "<h2>Your decision</h2>"
        f'<form id="task-form" method="post" action="/inbox/tasks/{escape(task_id)}">'
        + (f'<div id="form-fields">{fields}</div>' if fields else "")
        + '<label for="comment">Comment</label>'
        f'<textarea id="comment" name="comment">{escape(comment)}</textarea>'
        f"<div>{claim}{SUBMIT_BUTTON if submits else _outcome_controls(task['outcomes'])}</div></form>"
        '<a id="back" href="/inbox">Back to inbox</a>'
    )
    return _html(task["name"], body, status_code)


def _how_ended(task: dict) -> str:
    """What closed a task: a decision (its outcome), a completion without one, a timer or a deletion."""
    if task["end_time"] is None:
        return "open"
    if task["delete_reason"]:
        return f"ended without a decision: {task['delete_reason']}"
    return task["outcome"] or "completed"


def _process_state(service: WorkflowService, instance: dict, open_tasks: list[dict]) -> str:
    if instance["end_time"] is None:
        waiting = ", ".join(t["name"] for t in open_tasks) or "no user task"
        return f"{'suspended' if instance['suspended'] else 'running'}, waiting at {waiting}"
    if instance["delete_reason"]:
        return f"ended: deleted ({instance['delete_reason']})"
    end = instance["end_activity_id"]
    name = service.activity_name(instance, end)
    return f"ended at {end}" + (f" ({name})" if name else "")


def _holder(task: dict) -> str:
    """Who holds (or decided) a task, and who handed it to them while a delegation is pending."""
    holder = task["assignee"] or ""
    if task["delegation_state"] == "pending" and task["owner"]:
        return f"{holder} (delegated by {task['owner']})"
    return holder


def _comments_by_task(tasks: list[dict], comments: list[dict]) -> tuple[dict[str, list[dict]], list[dict]]:
    """The comments made on each task, and those made on none.

    A comment names its task when the client sent ``taskId`` (the inbox and the CLI do); one that does
    not, written by a task's assignee while the task was open, is the comment they decided it with (as
    clients that comment on the process before completing, like Airflow's operator, write it)."""
    on_task: dict[str, list[dict]] = {t["id"]: [] for t in tasks}
    other = []
    for comment in comments:
        task_id = comment["task_id"]
        if task_id is None:
            task_id = next(
                (
                    t["id"]
                    for t in tasks
                    if t["assignee"] == comment["author"]
                    and t["create_time"] <= comment["time"] <= (t["end_time"] or float("inf"))
                ),
                None,
            )
        on_task.get(task_id, other).append(comment)
    return on_task, other


def _history_table(tasks: list[dict], on_task: dict[str, list[dict]], current: str | None) -> str:
    """One row per task: who it was offered to, who claimed and decided it, how it ended, when, the
    comments made on it and, where the task kept any, its own variables (e.g. what a grant allowed)."""
    with_locals = any(t["local_variables"] for t in tasks)
    rows = []
    for t in tasks:
        local = {name: item.get("value") for name, item in t["local_variables"].items()}
        rows.append(
            f'<tr class="history-task{" this-task" if t["id"] == current else ""}" '
            f'data-task-id="{escape(t["id"])}">'
            f'<td class="name"><a href="/inbox/tasks/{quote(t["id"])}">{escape(t["name"])}</a></td>'
            f'<td class="groups">{escape(", ".join([*t["candidate_groups"], *t["candidate_users"]]))}</td>'
            f'<td class="assignee">{escape(_holder(t))}</td>'
            f'<td class="outcome">{escape(_how_ended(t))}</td>'
            f'<td class="created">{escape(_moment(t["create_time"]) or "")}</td>'
            f'<td class="claimed">{escape(_moment(t["claim_time"]) or "")}</td>'
            f'<td class="ended">{escape(_moment(t["end_time"]) or "")}</td>'
            f'<td class="task-comments"><ul>{_comment_items(on_task[t["id"]])}</ul></td>'
            + (f'<td class="task-variables">{readable(local) if local else ""}</td>' if with_locals else "")
            + "</tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("Task", "Offered to", "Claimed and decided by", "Outcome", "Created", "Claimed", "Ended")
    )
    head += "<th>Comments</th>" + ("<th>Task variables</th>" if with_locals else "")
    return f'<table id="history"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


DECISION_LABELS = {"decision-outcome": "Outcome", "decision-by": "Decided by", "decision-time": "When"}


def _history_page(
    principal: Principal,
    service: WorkflowService,
    instance_id: str,
    task: dict | None = None,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """A process's history: its state, every task with who claimed and decided it, the outcome, when,
    and the comments made on it; with ``task`` (a closed one), that task's decision first.

    Readable by every signed-in person of the process's tenant, as an open task's page is: the inbox, like
    the service's history API, narrows what a person may do (claim, complete), not what they may read."""
    try:
        instance = service.historic_instance(instance_id)
    except NotFound:
        return _not_found_page(principal, service, f"There is no process {instance_id}.")
    tasks = service.process_tasks(instance_id)
    on_task, other_comments = _comments_by_task(tasks, service.comments(instance_id))
    decision = ""
    if task is not None:
        decided = {
            "decision-outcome": _how_ended(task),
            "decision-by": task["assignee"] or "nobody",
            "decision-time": _moment(task["end_time"]),
        }
        decision = (
            '<section id="decision"><h2>Decision</h2>'
            + _details(decided, "decision-details", DECISION_LABELS)
            + f'<ul id="decision-comments">{_comment_items(on_task[task["id"]])}</ul></section>'
        )
    definition = (
        f"{instance['process_definition_name'] or instance['process_definition_key']} "
        f"({instance['process_definition_key']}, version {instance['process_definition_version']})"
    )
    details = {
        "process-name": instance["name"],
        "process-definition": definition,
        "business-key": instance["business_key"],
        "started-by": instance["start_user_id"],
        "started": _moment(instance["start_time"]),
        "ended": _moment(instance["end_time"]),
        "process-state": _process_state(service, instance, [t for t in tasks if t["end_time"] is None]),
    }
    details = {key: value for key, value in details.items() if value}
    title = task["name"] if task is not None else instance["name"] or definition
    body = (
        f'<h1 id="{"task-name" if task is not None else "history-title"}">{escape(title)}</h1>'
        + _signed_in_bar(principal, service)
        + _messages(notice, error)
        + decision
        + "<h2>Process</h2>"
        + _details(details, "process-details")
        + "<h2>Tasks</h2>"
        + _history_table(tasks, on_task, task["id"] if task is not None else None)
        + "<h2>Comments not made on a task</h2>"
        + (
            f'<ul id="process-comments">{_comment_items(other_comments)}</ul>'
            if other_comments
            else '<p id="no-process-comments">None.</p>'
        )
        + "<h2>Attachments</h2>"
        + _attachments_table(service.attachments(instance_id))
        + "<h2>Variables</h2>"
        + _variables_table(service.variables_of(instance_id))
        + '<a id="back" href="/inbox">Back to inbox</a>'
    )
    return _html(f"History: {title}", body, status_code)


@inbox_router.get("/processes/{instance_id}", response_class=HTMLResponse)
def process_page(instance_id: str, request: Request) -> HTMLResponse:
    """The history of a process, running or ended (the governance report links here)."""
    principal, service = _signed_in(request)
    return _history_page(principal, service, instance_id)


@inbox_router.get("/attachments/{instance_id}/{attachment_id}")
def attachment(instance_id: str, attachment_id: str, request: Request) -> Response:
    """An attachment's content, named as it was attached: HTML opens in the browser under a policy that
    lets it run nothing and load nothing (no scripts, no requests, an origin of its own), anything else
    downloads."""
    principal, service = _signed_in(request)
    try:
        row, content = service.attachment_content(instance_id, attachment_id)
    except NotFound as missing:
        return _not_found_page(principal, service, missing.exception)
    inline = _opens_in_browser(row["type"])
    disposition = "inline" if inline else "attachment"
    headers = {
        "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(row['name'])}",
        "X-Content-Type-Options": "nosniff",
    }
    if inline:
        headers["Content-Security-Policy"] = ATTACHMENT_POLICY
    return Response(content, media_type=row["type"], headers=headers)


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
    action, comment = form.get("action", ""), form.get("comment", "")
    outcome = "decided" if action == "decide" else form.get("outcome", "").strip()

    def refused(error: str, status_code: int) -> HTMLResponse:
        """The task again with why, nothing written: the reviewer's comment stays in its field."""
        return _task_page(principal, service, task_id, error=error, status_code=status_code, comment=comment)

    try:
        task = service.runtime_task(task_id)
    except NotFound:
        # e.g. sent twice, or decided by someone else meanwhile: show what became of it, change nothing
        return _task_page(
            principal, service, task_id, error="This task is not open any more.", status_code=409
        )
    try:
        if action == "claim":
            service.claim_task(task_id, user, user)
            return RedirectResponse(_link(f"/inbox/tasks/{task_id}", notice=f"Claimed by {user}."), 303)
        if task["outcomes"] and outcome not in task["outcomes"]:
            given = f"“{outcome}” is not an outcome of this task" if outcome else "Choose an outcome"
            return refused(f"{given}: choose one of {', '.join(task['outcomes'])}.", 400)
        if task["assignee"] not in (None, user):
            return refused(f"This task is claimed by {task['assignee']}.", 409)
        values = {v.name: v.value for v in service.variables_of(task["process_instance_id"])}
        variables, missing = submitted_variables(task["form_key"], values, form)
        if missing:
            return refused("; ".join(missing), 400)
        if task["assignee"] is None:
            service.claim_task(task_id, user, user)
        if comment.strip():  # before completing: whoever reads the decision sees its comment
            service.add_comment(task["process_instance_id"], comment.strip(), user, task_id)
        service.complete_task(task_id, outcome or None, variables, user)
    except ServiceError as failure:
        return _task_page(principal, service, task_id, error=failure.exception, status_code=failure.status)
    done = f"Completed “{task['name']}”" + (f" with outcome {outcome}." if outcome else ".")
    return RedirectResponse(_link("/inbox", notice=done), 303)
