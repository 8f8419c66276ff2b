"""An auditor opens the Governance view from the Airflow UI's navigation bar, in headless Chromium.

The stack is the release test's (``release_site``: ``airflow standalone``, both sandboxes, a batch the SME
approved); the batch is released through the REST API with the release manager's sign-off. The auditor
signs in to Airflow, opens **Governance**, finds the release with both approvals, opens its dataset card
(the bytes the manifest's ``dataset_card`` sha256 names) and follows an approval's link to its task
history in the OpenText inbox, which shows the decision. Screenshots land in
``test-artifacts/browser/governance-<suffix>/``.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, FrameLocator, Page, expect

from prodigy_opentext.core.governance import APPROVAL_HEADERS
from prodigy_opentext.governance_view import URL_PREFIX
from scripts.launchers import REVIEWER_PASSWORD
from scripts.stories.batch_approval import SME_REVIEWER
from scripts.stories.release import RELEASE_DAG, RELEASE_MANAGER
from tests.browser.conftest import ARTIFACTS, require_chromium
from tests.browser.test_airflow_ui import (
    WAIT_SECONDS,
    ReleaseSite,
    Screenshots,
    log_in,
    new_page,
    release_site,
    wait_for_signoff_task,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ReleaseSite, dict]]:
    """The release stack with its batch released: ``dataset_release`` run through the REST API, the
    release manager signing off in OpenText; yields the site and the release's ``publish`` result."""
    require_chromium()
    with release_site(tmp_path_factory.mktemp("governance-view")) as site:
        run = site.api.trigger(RELEASE_DAG, {"dataset": site.dataset, "version": site.version})
        signoff = wait_for_signoff_task(site, run["dag_run_id"])
        site.reviewer.decide(signoff, RELEASE_MANAGER, "approved", "Released for training.")
        ended = site.api.wait_for_run(RELEASE_DAG, run["dag_run_id"], timeout=WAIT_SECONDS, stack=site.stack)
        assert ended["state"] == "success", site.api.failure_report(RELEASE_DAG, run["dag_run_id"])
        yield site, site.api.xcom(RELEASE_DAG, run["dag_run_id"], "publish")


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with new_page(browser) as opened:
        yield opened


def view_frame(page: Page) -> FrameLocator:
    """The Governance view, as the UI shows it: in its frame."""
    return page.frame_locator('iframe[title="Governance"]')


def test_the_governance_view_shows_the_release_its_approvals_card_and_opentext_history(
    released: tuple[ReleaseSite, dict], page: Page
) -> None:
    site, release = released
    manifest = json.loads(Path(release["manifest"]).read_text())
    key = f"{site.dataset}-{site.version}"
    shots = Screenshots(ARTIFACTS / f"governance-{uuid.uuid4().hex[:8]}")
    with shots.on_failure(page):
        log_in(page, site.api.url, site.admin_password(), shots)
        page.get_by_role("link", name="Governance", exact=True).click()
        page.wait_for_url(re.compile(r"/plugin/governance"))
        view = view_frame(page)
        expect(view.get_by_role("heading", name="Annotation governance report")).to_be_visible()
        expect(view.locator("#audit-chain")).to_have_attribute("data-valid", "true")
        block = view.locator(f"#release-{key}")
        expect(block).to_be_visible()
        approvals = block.get_by_role("table").filter(has_text="deciding task")
        for approver in (SME_REVIEWER, RELEASE_MANAGER):
            expect(approvals.get_by_role("row").filter(has_text=approver)).to_have_count(1)
        expect(block).to_contain_text(release["manifest_sha256"])
        shots.take(page, "governance-view")
        block.scroll_into_view_if_needed()
        shots.take(page, "release")

        signoff_row = approvals.get_by_role("row").filter(has_text=RELEASE_MANAGER)
        deciding_task = signoff_row.locator("td").nth(APPROVAL_HEADERS.index("deciding task"))
        history_url = deciding_task.get_by_role("link").get_attribute("href") or ""
        assert history_url.startswith(f"{site.opentext.inbox_url}/tasks/"), history_url

        block.get_by_role("link", name=re.compile(r"^dataset card")).click()
        card_path = f"{URL_PREFIX}/releases/{site.dataset}/{site.version}/card"
        page.wait_for_url(re.compile(rf"/plugin/governance{re.escape(card_path)}$"))
        expect(view.get_by_role("heading", level=1)).to_contain_text(site.dataset)
        shots.take(page, "dataset-card")
        card = page.request.get(f"{site.api.url}{card_path}")
        assert card.ok, card.status
        assert hashlib.sha256(card.body()).hexdigest() == manifest["dataset_card"]["sha256"]

        inbox = page.context.new_page()
        inbox.goto(history_url)
        inbox.fill("#email", RELEASE_MANAGER)
        inbox.fill("#password", REVIEWER_PASSWORD)
        inbox.click("#log-in")
        inbox.wait_for_url(history_url)
        expect(inbox.locator("#decision-by")).to_have_text(RELEASE_MANAGER)
        expect(inbox.locator("#decision-outcome")).to_contain_text("approved")
        shots.take(inbox, "opentext-task-history")

    assert shots.taken == [
        "1-login.png",
        "2-governance-view.png",
        "3-release.png",
        "4-dataset-card.png",
        "5-opentext-task-history.png",
    ]
