"""The Airflow UI's Governance view: the governance report (flow 7) live, inside the UI.

An ``AirflowPlugin`` (the deployment's ``plugins/governance_plugin.py``) mounts :func:`governance_app` on
the api-server under :data:`URL_PREFIX` (``fastapi_apps``) and puts :data:`NAV_ENTRY` in the UI's
navigation bar (``external_views``), which shows the app in the UI's frame. Each request gathers the report
as the ``governance_report`` DAG does and renders the same page
(:func:`~prodigy_opentext.flows.governance.live_report_html`); the releases' dataset cards are served from
their folders, by plain names only.

Airflow does not authenticate a plugin's app (a mounted app inherits none of the core API's
dependencies), so every route here asks Airflow's auth manager itself: the signed-in user (the UI's JWT
cookie, or a bearer token) must be allowed to read the runs of ``readers_of``, the DAG that writes the
report, so who may read the written reports reads the live one and nobody else. A browser without a
session is sent to Airflow's sign-in page.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from prodigy_opentext.core.governance import ReleaseView
from prodigy_opentext.core.paths import plain_name
from prodigy_opentext.core.release import MANIFEST_NAME, release_path
from prodigy_opentext.exceptions import UnsafeName
from prodigy_opentext.flows.governance import live_report_html

URL_PREFIX = "/governance"
NAV_ENTRY = {
    "name": "Governance",
    "href": "governance/",
    "destination": "nav",
    "url_route": "governance",
    "nav_top_level": True,
}
"""The navigation bar's entry; ``href`` is relative to the UI's base URL, so it holds behind a prefix."""
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
"""The pages are self-contained (inline style and SVG, no script): nothing else may load, and only the
Airflow UI may frame them."""


def card_link(release: ReleaseView) -> str:
    """Where the view serves a release's card, relative to the report's page (``<prefix>/``)."""
    return f"releases/{quote(release['dataset'], safe='')}/{quote(release['version'], safe='')}/card"


def card_file(data_root: Path, dataset: str, version: str) -> Path:
    """The dataset card release ``dataset``/``version`` names in its manifest; 404 for a name that is not
    plain (no way out of the release folder) or a release or card that is not there."""
    try:
        folder = release_path(data_root, dataset, version)
        manifest: dict[str, Any] = json.loads((folder / MANIFEST_NAME).read_bytes())
        card = folder / plain_name((manifest.get("dataset_card") or {}).get("file"), "dataset card")
    except (UnsafeName, OSError, ValueError):
        raise HTTPException(404, f"no dataset card for release {dataset!r} {version!r}") from None
    if not card.is_file():
        raise HTTPException(404, f"release {dataset} {version} has no card file {card.name}")
    return card


def governance_app(
    data_root: Callable[[], Path], audit_path: Callable[[], Path], *, readers_of: str
) -> FastAPI:
    """The view's app: the report at ``/`` and each release's card at
    ``/releases/<dataset>/<version>/card``; the folders are read per request (the api-server's
    environment decides, as a worker's does for a task)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    reader = requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=readers_of)
    app = FastAPI(
        title="Governance", dependencies=[Depends(reader)], docs_url=None, redoc_url=None, openapi_url=None
    )

    @app.exception_handler(HTTPException)
    def refused(request: Request, error: HTTPException) -> Response:
        if error.status_code == 401 and "text/html" in request.headers.get("accept", ""):
            return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), 303)
        return JSONResponse({"detail": error.detail}, error.status_code, headers=error.headers)

    @app.get("/", response_class=HTMLResponse)
    def report() -> HTMLResponse:
        return HTMLResponse(live_report_html(data_root(), audit_path(), card_link), headers=HEADERS)

    @app.get("/releases/{dataset}/{version}/card", response_class=HTMLResponse)
    def card(dataset: str, version: str) -> Response:
        content = card_file(data_root(), dataset, version).read_bytes()
        return Response(content, media_type="text/html; charset=utf-8", headers=HEADERS)

    return app


def fastapi_app(
    data_root: Callable[[], Path], audit_path: Callable[[], Path], *, readers_of: str
) -> dict[str, Any]:
    """The plugin's ``fastapi_apps`` entry."""
    return {
        "app": governance_app(data_root, audit_path, readers_of=readers_of),
        "url_prefix": URL_PREFIX,
        "name": "Governance",
    }
