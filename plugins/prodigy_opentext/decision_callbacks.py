"""Where OpenText's models call Airflow back when a decision is in: ``POST /opentext-callbacks/decisions``.

Served inside Airflow's api-server by a plugin (``plugins/opentext_callbacks_plugin.py``). Airflow does not
authenticate plugin apps and OpenText cannot sign in to Airflow, so the caller proves itself with a shared
token: ``Authorization: Bearer <token>``, the token being the password of the Airflow connection
``opentext_callback`` and, on OpenText's side, the tenant configuration's ``airflow_callback_token`` (never
a process variable). The call only sets the signal the waits watch
(:mod:`prodigy_opentext.decision_signals`): the decision itself is always read from OpenText.

    {"processInstanceId": "<id>", "activityId": "<user task>"}  ->  202 {"signal": "<Variable key>"}

401 for a missing or wrong token, 503 while the connection is not set (the waits poll), 400 for a body
that names no valid process instance or activity.
"""

from __future__ import annotations

import hmac
import json
import re
from datetime import UTC, datetime
from typing import Any

from fastapi import Body, FastAPI, Header, HTTPException

from prodigy_opentext.decision_signals import signal_key

CALLBACK_CONN_ID = "opentext_callback"
URL_PREFIX = "/opentext-callbacks"
_IDENTIFIER = re.compile(r"^(?!.*__)[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}(?<!_)$")
"""An id as OpenText writes them; no ``__`` and no ``_`` at the end, so that the ``__`` separating a signal
key's parts is never ambiguous, nor one process's key prefix another's."""


def _expected_token() -> str:
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        token = Connection.get(CALLBACK_CONN_ID).password
    except AirflowNotFoundException:
        token = None
    if not token:
        raise HTTPException(
            503,
            f"decision callbacks are not set up: add the Airflow connection {CALLBACK_CONN_ID!r} with the "
            "token OpenText sends as its password; until then the waits poll",
        )
    return token


def _identifier(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise HTTPException(
            400,
            f"{field} must be an identifier (letters, digits, '-', '_', '.', ':'; no '__', no '_' at the "
            f"end), got {value!r}",
        )
    return value


def _set_signal(key: str, value: dict[str, Any]) -> None:
    # The api-server has no Task SDK channel to write through: the metadata database's Variable model is
    # what Airflow's own /api/v2/variables route writes with.
    from airflow.models.variable import Variable

    Variable.set(key, json.dumps(value), description="An OpenText decision is in (decision callback)")


def fastapi_app() -> dict[str, Any]:
    """The plugin's ``fastapi_apps`` entry."""
    app = FastAPI(title="OpenText decision callbacks", docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/decisions", status_code=202)
    def decision_is_in(
        body: dict[str, Any] = Body(...),  # noqa: B008 (FastAPI's way of declaring a JSON body)
        authorization: str | None = Header(default=None),
    ) -> dict[str, str]:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():  # before anything is looked up for the caller
            raise HTTPException(401, "a decision callback needs Authorization: Bearer <the shared token>")
        if not hmac.compare_digest(token.strip().encode(), _expected_token().encode()):
            raise HTTPException(401, "a decision callback needs Authorization: Bearer <the shared token>")
        process_instance_id = _identifier(body, "processInstanceId")
        activity_id = _identifier(body, "activityId")
        key = signal_key(process_instance_id, activity_id)
        _set_signal(key, {"activity_id": activity_id, "at": datetime.now(UTC).isoformat(timespec="seconds")})
        return {"signal": key}

    return {"app": app, "url_prefix": URL_PREFIX, "name": "OpenText decision callbacks"}
