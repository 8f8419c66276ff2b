"""Hook for OpenText Workflow Service (OpenText's Flowable-based BPMN engine).

The module-level parts are plain Python shared with the async hook the triggers use
(:mod:`prodigy_opentext.hooks.opentext_async`): connection settings and URL building, the token cache,
retry decisions, error and HAL envelope parsing, typed variable conversion, and the decision probe that
reads whether a reviewer has decided. Only the transport differs between the two hooks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import random
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from prodigy_opentext.exceptions import (
    OpenTextAuthError,
    OpenTextError,
    OpenTextNotFoundError,
    OpenTextUnavailableError,
)

if TYPE_CHECKING:
    import requests
    from airflow.sdk import Connection

T = TypeVar("T")

API_PREFIX = "/workflow/v1"
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
GRANT_TYPES = ("client_credentials", "password")
BPMN_NAMESPACE = "http://www.omg.org/spec/BPMN/20100524/MODEL"
INT32 = range(-(2**31), 2**31)


# --- Connection settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter inside a bounded budget; the server's ``Retry-After`` wins."""

    max_attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 30.0
    budget: float = 120.0

    def next_delay(self, attempt: int, elapsed: float, retry_after: float | None) -> float | None:
        """Seconds to wait before retrying failed attempt number ``attempt`` (0-based), or None to give up."""
        if attempt + 1 >= self.max_attempts:
            return None
        if retry_after is not None:
            delay = retry_after
        else:
            delay = min(self.max_delay, self.base_delay * 2**attempt) * random.uniform(1.0, 1.25)
        if elapsed + delay > self.budget:
            return None
        return delay


@dataclass(frozen=True)
class OpenTextSettings:
    """What a hook needs from an ``opentext_workflow`` connection, validated once."""

    root_url: str
    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)
    grant_type: str = "client_credentials"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    verify: bool | str = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @classmethod
    def from_connection(cls, conn: Connection) -> OpenTextSettings:
        extra = conn.extra_dejson
        where = f"OpenText connection {conn.conn_id!r}"
        if not conn.host:
            raise ValueError(f"{where}: host must be the root URL, e.g. https://na-1-dev.api.opentext.com")
        if not extra.get("tenant_id"):
            raise ValueError(f"{where}: extra field 'tenant_id' is missing")
        if not conn.login or not conn.password:
            raise ValueError(f"{where}: login (client id) and password (client secret) are required")
        grant_type = extra.get("grant_type", "client_credentials")
        if grant_type not in GRANT_TYPES:
            raise ValueError(f"{where}: extra 'grant_type' is {grant_type!r}; expected one of {GRANT_TYPES}")
        if grant_type == "password" and not (extra.get("username") and extra.get("password")):
            raise ValueError(f"{where}: grant_type 'password' needs extra 'username' and 'password'")
        defaults = RetryPolicy()
        return cls(
            root_url=normalise_root_url(conn.host),
            tenant_id=str(extra["tenant_id"]),
            client_id=conn.login,
            client_secret=conn.password,
            grant_type=grant_type,
            username=extra.get("username"),
            password=extra.get("password"),
            timeout=float(extra.get("timeout", 30.0)),
            verify=tls_verify(extra.get("verify", True)),
            retry=RetryPolicy(
                max_attempts=int(extra.get("max_retries", defaults.max_attempts - 1)) + 1,
                budget=float(extra.get("retry_budget", defaults.budget)),
            ),
        )

    @property
    def token_url(self) -> str:
        return f"{self.root_url}/tenants/{self.tenant_id}/oauth2/token"

    def api_url(self, path: str) -> str:
        return f"{self.root_url}{API_PREFIX}/{path.lstrip('/')}"

    def token_form(self) -> dict[str, str]:
        form = {
            "grant_type": self.grant_type,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }
        if self.grant_type == "password":
            form |= {"username": self.username or "", "password": self.password or ""}
        return form


def tls_verify(value: Any) -> bool | str:
    """The ``verify`` extra: a boolean (also as the strings a form or env var gives) or a CA bundle path."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    return value


def normalise_root_url(host: str) -> str:
    """Accept ``host``, ``https://host`` or the API base ``https://host/workflow/v1``; return the root URL."""
    root = host.strip().rstrip("/")
    if "://" not in root:
        root = f"https://{root}"
    return root.removesuffix(API_PREFIX)


# --- Tokens, retries, answers ---------------------------------------------------------------------------


class TokenCache:
    """The bearer token and its expiry, refreshed ahead of expiry so no call starts with a dying token."""

    DEFAULT_LIFETIME = 300.0

    def __init__(self) -> None:
        self._token: str | None = None
        self._refresh_at = 0.0

    def current(self, now: float) -> str | None:
        return self._token if self._token and now < self._refresh_at else None

    def store(self, answer: Any, now: float) -> str:
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not token:
            raise OpenTextAuthError("the token endpoint answered without an access_token")
        lifetime = float(answer.get("expires_in") or self.DEFAULT_LIFETIME)
        self._token = token
        self._refresh_at = now + lifetime - min(60.0, lifetime * 0.1)
        return token

    def clear(self) -> None:
        self._token = None


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (it may be a number of seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def describe_error_body(text: str) -> tuple[str, str | None, str | None]:
    """OpenText's own words from an error body: (message, exception, error code)."""
    try:
        body = json.loads(text)
    except ValueError:
        return (text.strip()[:500] or "empty answer", None, None)
    if not isinstance(body, dict):
        return (str(body)[:500], None, None)
    fault = body.get("fault")
    if isinstance(fault, dict):
        detail = fault.get("detail") if isinstance(fault.get("detail"), dict) else {}
        return (str(fault.get("faultstring") or fault), None, detail.get("errorcode"))
    if "message" in body or "exception" in body:
        return (str(body.get("message") or ""), body.get("exception"), None)
    if "error" in body:  # OAuth2 token endpoint
        return (str(body.get("error_description") or body["error"]), None, str(body["error"]))
    return (text.strip()[:500], None, None)


def error_from_answer(
    status: int, text: str, *, method: str, url: str, retry_after: float | None = None
) -> OpenTextError:
    message, exception, error_code = describe_error_body(text)
    where = {"status": status, "method": method, "url": url, "exception": exception, "error_code": error_code}
    if status in RETRYABLE_STATUSES:
        return OpenTextUnavailableError(message, retry_after=retry_after, **where)
    if status in (401, 403):
        return OpenTextAuthError(message, **where)
    if status == 404:
        return OpenTextNotFoundError(message, **where)
    return OpenTextError(message, **where)


def decode_answer(status: int, text: str, retry_after: str | None, *, method: str, url: str) -> Any:
    """The JSON of a successful answer (None when empty); raise the matching OpenTextError otherwise."""
    if status >= 400:
        raise error_from_answer(
            status, text, method=method, url=url, retry_after=parse_retry_after(retry_after)
        )
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError as err:
        raise OpenTextError(
            f"answer is not JSON: {text[:200]!r}", status=status, method=method, url=url
        ) from err


def query_params(params: Mapping[str, Any] | None) -> dict[str, str | int | float] | None:
    """Query parameters as OpenText expects them (booleans as ``true``/``false``; None left out)."""
    if params is None:
        return None
    return {
        name: ("true" if value else "false") if isinstance(value, bool) else value
        for name, value in params.items()
        if value is not None
    }


def unreachable(err: Exception, *, method: str, url: str) -> OpenTextUnavailableError:
    return OpenTextUnavailableError(f"no answer ({type(err).__name__}: {err})", method=method, url=url)


# --- HAL envelopes and paging ---------------------------------------------------------------------------


def embedded_items(body: Any) -> list[dict[str, Any]]:
    """The items of a HAL list ``{"_embedded": {"<collection>": [...]}, "page": {...}}``."""
    if not isinstance(body, dict) or not ("_embedded" in body or "page" in body):
        raise OpenTextError(f"expected a HAL list envelope with '_embedded', got {str(body)[:200]}")
    lists = [value for value in (body.get("_embedded") or {}).values() if isinstance(value, list)]
    if len(lists) > 1:
        raise OpenTextError(f"HAL envelope holds more than one collection: {sorted(body['_embedded'])}")
    return lists[0] if lists else []


def next_page_offset(body: Any, offset: int, received: int, count: int) -> int | None:
    """Offset of the next page, or None after the last one (by ``page.totalElements`` when present)."""
    total = (body.get("page") or {}).get("totalElements")
    following = offset + received
    if received == 0:
        return None
    if total is not None:
        return following if following < int(total) else None
    return following if received >= count else None


# --- Typed variables ------------------------------------------------------------------------------------


def rest_variable(name: str, value: Any) -> dict[str, Any]:
    """A Python value as OpenText's typed variable ``{name, value, type}``."""
    if isinstance(value, bool):
        kind = "boolean"
    elif isinstance(value, int):
        kind = "integer" if value in INT32 else "long"
    elif isinstance(value, float):
        kind = "double"
    elif isinstance(value, str):
        kind = "string"
    elif isinstance(value, datetime | date):
        moment = value if isinstance(value, datetime) else datetime(value.year, value.month, value.day)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return {"name": name, "value": format_timestamp(moment), "type": "date"}
    elif isinstance(value, dict | list):
        kind = "json"
    elif value is None:
        kind = "string"
    else:
        raise TypeError(f"variable {name!r}: cannot send a {type(value).__name__} to OpenText")
    return {"name": name, "value": value, "type": kind}


def to_rest_variables(values: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    return [rest_variable(name, value) for name, value in (values or {}).items()]


def from_rest_variable(item: Mapping[str, Any]) -> Any:
    """OpenText's typed variable as a Python value."""
    value, kind = item.get("value"), item.get("type")
    if value is None:
        return None
    if kind in ("integer", "long", "short"):
        return int(value)
    if kind == "double":
        return float(value)
    if kind == "boolean":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    if kind == "date":
        return parse_timestamp(value)
    if kind == "json" and isinstance(value, str):
        return json.loads(value)
    return value


def from_rest_variables(items: list[Mapping[str, Any]] | None) -> dict[str, Any]:
    return {item["name"]: from_rest_variable(item) for item in items or []}


def format_timestamp(moment: datetime) -> str:
    """OpenText's timestamp form, ``2018-04-17T10:17:43.902+0000``."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


def parse_timestamp(text: str) -> datetime:
    """OpenText's timestamps; one without an offset is UTC, as the service keeps its clock."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --- BPMN models ----------------------------------------------------------------------------------------


def read_model_xml(path_or_xml: str | Path) -> str:
    """BPMN XML from a file path, plain XML or base64-encoded XML."""
    if isinstance(path_or_xml, Path):
        return path_or_xml.read_text(encoding="utf-8")
    text = path_or_xml.strip()
    if text.startswith("<"):
        return path_or_xml
    try:
        if Path(text).is_file():
            return Path(text).read_text(encoding="utf-8")
    except OSError:  # too long for a file name: base64 content
        pass
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as err:
        raise ValueError(f"{text[:80]!r} is neither a BPMN file, BPMN XML nor base64") from err


def model_process_key(xml: str) -> str:
    """The id of the executable process a BPMN document defines (its process definition key)."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as err:
        raise ValueError(f"BPMN model is not well-formed XML: {err}") from err
    keys = [
        element.get("id")
        for element in root.iter(f"{{{BPMN_NAMESPACE}}}process")
        if element.get("isExecutable", "true").lower() != "false" and element.get("id")
    ]
    if len(keys) != 1:
        raise ValueError(f"a BPMN model must define exactly one executable process; found {keys or 'none'}")
    return keys[0]


def model_xml_of(model: Mapping[str, Any]) -> str | None:
    """The XML of a deployed model as OpenText lists it (plain or base64 ``modelContent``)."""
    content = model.get("modelContent")
    if not isinstance(content, str):
        return None
    return content if content.lstrip().startswith("<") else read_model_xml(content)


def content_checksum(xml: str) -> str:
    """Checksum of a model's XML, blind to line endings and surrounding whitespace."""
    normalised = "\n".join(line.rstrip() for line in xml.strip().splitlines())
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()


# --- Decisions ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiCall:
    """One read the decision probe asks its hook to make."""

    path: str
    params: dict[str, Any] | None = None


def decision_probe(
    process_instance_id: str, task_definition_key: str | None = None, decision_variable: str | None = None
) -> Generator[ApiCall, Any, dict[str, Any] | None]:
    """Read whether a decision exists; the same steps for the sync hook (sensor) and async hook (trigger).

    A generator: it yields :class:`ApiCall` reads, receives their decoded JSON and returns the decision
    record, or None while no decision exists; errors of a read end it in the caller. What counts as
    decided: the given task definition completed, else the given variable set, else the instance ended. An
    instance that ends first is decided as well, so a cancelled process never leaves a wait hanging.
    """
    process_answer = yield ApiCall(
        "/historic-process-instances",
        {"processInstanceId": process_instance_id, "includeProcessVariables": "true"},
    )
    found = embedded_items(process_answer)
    if not found:
        raise OpenTextNotFoundError(f"process instance {process_instance_id} does not exist", status=404)
    process = found[0]
    variables = from_rest_variables(process.get("variables"))
    ended = bool(process.get("endTime"))
    if (
        not ended
        and not task_definition_key
        and (not decision_variable or variables.get(decision_variable) is None)
    ):
        return None
    task_filter = {
        "processInstanceId": process_instance_id,
        "finished": "true",
        "sort": "endTime",
        "order": "desc",
    }
    if task_definition_key:
        task_filter["taskDefinitionKey"] = task_definition_key
    finished_tasks = embedded_items((yield ApiCall("/historic-task-instances", task_filter)))
    task = finished_tasks[0] if finished_tasks else None
    if task_definition_key and task is None and not ended:
        return None
    try:
        comments = yield ApiCall(f"/process-instances/{process_instance_id}/comments")
    except OpenTextNotFoundError:  # a service may keep comments only while the instance runs
        comments = []
    if decision_variable:
        outcome = variables.get(decision_variable)
    elif task_definition_key:
        outcome = (task or {}).get("outcome") or variables.get(f"{task_definition_key}_outcome")
    else:
        outcome = variables.get("outcome")
    return {
        "process_instance_id": process_instance_id,
        "business_key": process.get("businessKey"),
        "outcome": outcome,
        "ended": ended,
        "end_activity_id": process.get("endActivityId"),
        "delete_reason": process.get("deleteReason"),
        "task_definition_key": (task or {}).get("taskDefinitionKey"),
        "task_id": (task or {}).get("id"),
        "approver": (task or {}).get("assignee"),
        "decided_at": (task or {}).get("endTime") or process.get("endTime"),
        "comments": [
            {"author": c.get("author"), "message": c.get("message"), "time": c.get("time")}
            for c in (comments if isinstance(comments, list) else embedded_items(comments))
        ],
    }


# --- The hook -------------------------------------------------------------------------------------------


class OpenTextWorkflowHook(BaseHook):
    """Talk to OpenText Workflow Service's REST API with an OAuth2 client-credentials token.

    Connection fields: host = root URL (``https://na-1-dev.api.opentext.com``), login/password = client id and
    secret; extra: ``tenant_id``, ``grant_type``, optional ``username``/``password``, ``timeout``, ``verify``,
    ``max_retries`` and ``retry_budget`` (seconds spent retrying one call on 429/5xx/connection errors).
    """

    conn_name_attr = "opentext_conn_id"
    default_conn_name = "opentext_default"
    conn_type = "opentext_workflow"
    hook_name = "OpenText Workflow Service"

    def __init__(self, opentext_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.opentext_conn_id = opentext_conn_id
        self._tokens = TokenCache()

    @cached_property
    def settings(self) -> OpenTextSettings:
        return OpenTextSettings.from_connection(self.get_connection(self.opentext_conn_id))

    def get_conn(self) -> requests.Session:
        return self.session

    @cached_property
    def session(self) -> requests.Session:
        import requests

        session = requests.Session()
        session.verify = self.settings.verify
        session.headers["Accept"] = "application/json"
        return session

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.request("GET", "/process-instances", params={"count": 1})
        except (OpenTextError, ValueError) as err:
            return False, str(err)
        return True, f"Connected to {self.settings.root_url} (tenant {self.settings.tenant_id})"

    # Transport

    def _send(self, method: str, url: str, **kwargs: Any) -> Any:
        import requests

        try:
            response = self.session.request(method, url, timeout=self.settings.timeout, **kwargs)
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as err:
            raise unreachable(err, method=method, url=url) from err
        return decode_answer(
            response.status_code, response.text, response.headers.get("Retry-After"), method=method, url=url
        )

    def _bearer(self) -> dict[str, str]:
        now = time.monotonic()
        token = self._tokens.current(now)
        if token is None:
            self.log.debug("Fetching an OpenText token for tenant %s", self.settings.tenant_id)
            answer = self._send("POST", self.settings.token_url, data=self.settings.token_form())
            token = self._tokens.store(answer, now)
            mask_secret(token)
        return {"Authorization": f"Bearer {token}"}

    def _exchange(self, method: str, path: str, params: Mapping[str, Any] | None, body: Any) -> Any:
        """One call with a bearer token; a 401 fetches a new token and tries once more."""
        url, params = self.settings.api_url(path), query_params(params)
        try:
            return self._send(method, url, params=params, json=body, headers=self._bearer())
        except OpenTextAuthError as err:
            if err.status != 401:
                raise
            self.log.info("OpenText refused the cached token; fetching a new one")
            self._tokens.clear()
            return self._send(method, url, params=params, json=body, headers=self._bearer())

    def _retrying(self, operation: Callable[[], T]) -> T:
        started, attempt = time.monotonic(), 0
        while True:
            try:
                return operation()
            except OpenTextUnavailableError as err:
                delay = self.settings.retry.next_delay(attempt, time.monotonic() - started, err.retry_after)
                if delay is None:
                    raise
                self.log.warning("%s; retrying in %.1f s", err, delay)
                time.sleep(delay)
                attempt += 1

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        retry: bool = True,
    ) -> Any:
        """Call ``{root}/workflow/v1{path}`` and return the decoded JSON.

        :param retry: retry on 429, 5xx and connection errors. Pass False for a non-idempotent call whose
            caller checks, before trying again, whether the first attempt landed.
        """

        def operation() -> Any:
            return self._exchange(method, path, params, json)

        return self._retrying(operation) if retry else operation()

    def paginate(
        self, path: str, params: Mapping[str, Any] | None = None, count: int = 100
    ) -> Iterator[dict]:
        """Every item of a HAL list, page by page (``offset``/``count``)."""
        offset: int | None = 0
        while offset is not None:
            body = self.request("GET", path, params={**(params or {}), "offset": offset, "count": count})
            items = embedded_items(body)
            yield from items
            offset = next_page_offset(body, offset, len(items), count)

    def _post_once(self, path: str, body: Any, landed: Callable[[], T | None]) -> T:
        """POST something that must happen once: before trying again, look whether the last try landed."""
        tried = False

        def operation() -> Any:
            nonlocal tried
            if tried and (found := landed()) is not None:
                return found
            tried = True
            return self.request("POST", path, json=body, retry=False)

        return self._retrying(operation)

    # Models

    def list_models(self, key: str | None = None, latest_version: bool = False) -> list[dict[str, Any]]:
        params = {"key": key} if key else {}
        if latest_version:
            params["latestVersion"] = "true"
        return list(self.paginate("/runtime/models", params))

    def latest_model(self, key: str) -> dict[str, Any] | None:
        models = self.list_models(key, latest_version=True)
        return max(models, key=lambda model: int(model.get("version") or 0)) if models else None

    def deploy_model(self, path_or_xml: str | Path) -> dict[str, Any]:
        """Deploy a BPMN model unless its latest deployed version has the same content.

        Returns ``{"key", "deployed": bool, "model": <OpenText's model record>}``.
        """
        xml = read_model_xml(path_or_xml)
        key = model_process_key(xml)
        checksum = content_checksum(xml)

        def unchanged() -> dict[str, Any] | None:
            latest = self.latest_model(key)
            if latest is None:
                return None
            if "modelContent" not in latest:  # lists leave the content out; the model itself has it
                latest = self.request("GET", f"/runtime/models/{latest['id']}")
            deployed_xml = model_xml_of(latest)
            return latest if deployed_xml and content_checksum(deployed_xml) == checksum else None

        current = unchanged()
        if current is not None:
            return {"key": key, "deployed": False, "model": current}
        encoded = base64.b64encode(xml.encode("utf-8")).decode("ascii")
        model = self._post_once("/runtime/models", {"modelType": "xml", "modelContent": encoded}, unchanged)
        self.log.info("Deployed BPMN model %s (version %s)", key, model.get("version"))
        return {"key": key, "deployed": True, "model": model}

    # Process instances

    def start_process(
        self,
        process_definition_key: str,
        business_key: str,
        variables: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        """Start a process instance once per business key: a running or finished one is returned instead."""
        body: dict[str, Any] = {
            "processDefinitionKey": process_definition_key,
            "businessKey": business_key,
            "variables": to_rest_variables(variables),
        }
        if name:
            body["name"] = name

        def existing() -> dict[str, Any] | None:
            return self.find_by_business_key(process_definition_key, business_key)

        found = existing()
        if found is not None:
            self.log.info(
                "Process %s with business key %s exists: %s",
                process_definition_key,
                business_key,
                found["id"],
            )
            return found
        return self._post_once("/process-instances", body, existing)

    def find_by_business_key(self, process_definition_key: str, business_key: str) -> dict[str, Any] | None:
        """The running instance with this business key, else the most recently started finished one."""
        where = {"processDefinitionKey": process_definition_key, "businessKey": business_key}
        running = self.find_processes(**where)
        if running:
            return running[0]
        finished = self.historic_processes(**where, sort="startTime", order="desc")
        return finished[0] if finished else None

    def get_process(self, process_instance_id: str, include_variables: bool = True) -> dict[str, Any]:
        params = {"includeProcessVariables": "true"} if include_variables else None
        return self.request("GET", f"/process-instances/{process_instance_id}", params=params)

    def find_processes(self, **filters: Any) -> list[dict[str, Any]]:
        """Running process instances matching OpenText's filters (``processDefinitionKey``…)."""
        return list(self.paginate("/process-instances", filters))

    def cancel_process(self, process_instance_id: str, reason: str | None = None) -> None:
        params = {"deleteReason": reason} if reason else None
        self.request("DELETE", f"/process-instances/{process_instance_id}", params=params)

    # Tasks

    def list_tasks(self, **filters: Any) -> list[dict[str, Any]]:
        """Open tasks matching OpenText's filters (``processInstanceId``, ``assignee``…)."""
        return list(self.paginate("/tasks", filters))

    def get_task(self, task_id: str) -> dict[str, Any]:
        return self.request("GET", f"/tasks/{task_id}")

    def claim_task(self, task_id: str, assignee: str) -> None:
        self.request("POST", f"/tasks/{task_id}", json={"action": "claim", "assignee": assignee})

    def delegate_task(self, task_id: str, assignee: str) -> None:
        self.request("POST", f"/tasks/{task_id}", json={"action": "delegate", "assignee": assignee})

    def complete_task(
        self, task_id: str, outcome: str | None = None, variables: Mapping[str, Any] | None = None
    ) -> None:
        """Complete a task once: a retry after a lost answer finds the task already finished in history."""
        body: dict[str, Any] = {"action": "complete", "variables": to_rest_variables(variables)}
        if outcome is not None:
            body["outcome"] = outcome

        def finished() -> dict[str, Any] | None:
            try:
                task = self.request("GET", f"/historic-task-instances/{task_id}")
            except OpenTextNotFoundError:
                return None
            return task if task.get("endTime") else None

        self._post_once(f"/tasks/{task_id}", body, finished)

    # Variables

    def get_variables(self, process_instance_id: str) -> dict[str, Any]:
        items = self.request("GET", f"/process-instances/{process_instance_id}/variables")
        return from_rest_variables(items)

    def set_variables(self, process_instance_id: str, values: Mapping[str, Any]) -> None:
        """Create or update process variables, each with its OpenText type."""
        for item in to_rest_variables(values):
            self.request(
                "PUT", f"/process-instances/{process_instance_id}/variables/{item['name']}", json=item
            )

    # Comments

    def list_comments(self, process_instance_id: str) -> list[dict[str, Any]]:
        answer = self.request("GET", f"/process-instances/{process_instance_id}/comments")
        return answer if isinstance(answer, list) else embedded_items(answer)

    def add_comment(self, process_instance_id: str, message: str) -> dict[str, Any]:
        """Add a comment once: a retry after a lost answer finds the comment already there."""

        def posted() -> dict[str, Any] | None:
            same = [c for c in self.list_comments(process_instance_id) if c.get("message") == message]
            return same[-1] if same else None

        return self._post_once(
            f"/process-instances/{process_instance_id}/comments", {"message": message}, posted
        )

    # History

    def historic_processes(self, **filters: Any) -> list[dict[str, Any]]:
        return list(self.paginate("/historic-process-instances", filters))

    def get_historic_process(self, process_instance_id: str) -> dict[str, Any]:
        return self.request("GET", f"/historic-process-instances/{process_instance_id}")

    def process_started_at(self, process_instance_id: str) -> datetime | None:
        """When OpenText started the process instance (None when it does not say)."""
        started = self.get_historic_process(process_instance_id).get("startTime")
        return parse_timestamp(started) if started else None

    def historic_tasks(self, **filters: Any) -> list[dict[str, Any]]:
        return list(self.paginate("/historic-task-instances", filters))

    # Decisions

    def read_decision(
        self,
        process_instance_id: str,
        task_definition_key: str | None = None,
        decision_variable: str | None = None,
    ) -> dict[str, Any] | None:
        """The reviewers' decision on a process instance, or None while they have not decided."""
        probe = decision_probe(process_instance_id, task_definition_key, decision_variable)
        try:
            call = next(probe)
            while True:
                call = probe.send(self.request("GET", call.path, params=call.params))
        except StopIteration as done:
            return done.value
