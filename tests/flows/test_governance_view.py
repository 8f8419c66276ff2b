"""The Governance view's app as Airflow's api-server mounts it from the plugins folder, over HTTP (FastAPI's
test client on Airflow's own app), after a real batch approval and release against both sandboxes: who
may read it, the report it renders live, the dataset card it serves, and the paths it refuses.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest

from prodigy_opentext.governance_view import HEADERS, NAV_ENTRY, URL_PREFIX
from tests.flows.support import RELEASE_MANAGER, SME, released

pytestmark = pytest.mark.slow


@pytest.fixture
def airflow_app() -> Iterator:
    """Airflow's api-server app, with the plugins of the project's plugins folder, as a test client."""
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from fastapi.testclient import TestClient

    purge_cached_app()
    with TestClient(create_app()) as client:
        yield client
    purge_cached_app()


def token(role: str | None) -> str:
    """A JWT for a user of Airflow's simple auth manager, as its sign-in issues one."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="reader", role=role))


def test_the_view_shows_the_report_live_to_readers_of_the_report_dag_and_serves_release_cards(
    flows, annotated_dataset, airflow_app, monkeypatch
) -> None:
    sandbox, data = flows["sandbox"], flows["data"]
    dataset = annotated_dataset()
    version, _ = released(sandbox, flows["dags"], dataset)
    page = f"{URL_PREFIX}/"

    anonymous = airflow_app.get(page)
    assert anonymous.status_code == 401
    browser = airflow_app.get(page, headers={"Accept": "text/html"}, follow_redirects=False)
    assert browser.status_code == 303
    assert browser.headers["location"].startswith("/auth/login?next=")
    nobody = airflow_app.get(page, headers={"Authorization": f"Bearer {token(None)}"})
    assert nobody.status_code == 403, "a user without a role may not read the governance_report runs"

    airflow_app.cookies.set("_token", token("VIEWER"))  # what the UI's frame sends
    plugins = airflow_app.get("/api/v2/plugins").json()["plugins"]
    (view,) = [p for p in plugins if p["name"] == "governance_view"]
    (entry,) = view["external_views"]
    assert {key: entry[key] for key in NAV_ENTRY} == NAV_ENTRY
    assert [a["url_prefix"] for a in view["fastapi_apps"]] == [URL_PREFIX]

    shown = airflow_app.get(page)
    assert shown.status_code == 200, shown.text
    assert all(shown.headers[name] == value for name, value in HEADERS.items())
    html = shown.text
    assert '<p id="audit-chain" class="ok" data-valid="true">' in html
    assert f'id="release-{dataset}-{version}"' in html
    manifest_path = data / "releases" / dataset / version / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert {a["approver"] for a in manifest["approvals"]} == {SME, RELEASE_MANAGER}
    for approval in manifest["approvals"]:
        assert approval["approver"] in html
        assert f'href="{sandbox.url}/inbox/processes/{approval["process_instance_id"]}"' in html
    assert f'href="{sandbox.url}/inbox/tasks/' in html
    assert f'href="releases/{dataset}/{version}/card"' in html

    card = airflow_app.get(f"{page}releases/{dataset}/{version}/card")
    assert card.status_code == 200
    assert card.headers["content-type"] == "text/html; charset=utf-8"
    assert hashlib.sha256(card.content).hexdigest() == manifest["dataset_card"]["sha256"]
    for refused in (
        f"releases/{dataset}/..%2F..%2F..%2Faudit/card",
        f"releases/.{dataset}/{version}/card",
        f"releases/{dataset}/b0/card",
    ):
        assert airflow_app.get(page + refused).status_code == 404, refused

    audit = data / "audit" / "governance.jsonl"
    lines = audit.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace(SME, "someone.else@example.com")
    audit.write_text("".join(lines))
    assert "AUDIT CHAIN BROKEN at line 2" in airflow_app.get(page).text, "read per request"

    monkeypatch.delenv("AIRFLOW_CONN_OPENTEXT_DEFAULT")
    without_opentext = airflow_app.get(page)
    assert without_opentext.status_code == 200, "a system that cannot be read is a problem on the page"
    problems = without_opentext.text.split('<ul id="problems">', 1)[1].split("</ul>", 1)[0]
    assert "OpenText&#x27;s task history could not be read" in problems
    assert "/inbox/" not in without_opentext.text
