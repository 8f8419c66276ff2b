"""A reviewer approves in the OpenText sandbox's inbox page, in headless Chromium; the waiting DAG resumes.

Needs Debian's Chromium at /usr/bin/chromium (``make browser`` installs it). Without it these tests skip,
or fail when ``TEST_REQUIRE_SERVICES=1``. Screenshots land in ``test-artifacts/browser/``.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, require_chromium
from tests.fixtures.airflow_db import task_states
from tests.fixtures.background import acting_in_background
from tests.fixtures.opentext_sandbox import PASSWORD
from tests.sensors import test_opentext_sensor as sensor_tests

REVIEWER = "sme@example.com"

opentext = sensor_tests.opentext
deferred = sensor_tests.deferred


@pytest.fixture
def chromium() -> Path:
    return require_chromium()


def approve_in_inbox(inbox_url: str, business_key: str, shots: Path) -> None:
    """Open the SME group's inbox, open the batch's task, comment and click Approve."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{inbox_url}?group=annotation-sme")
            page.wait_for_selector("#login-form")  # the inbox sends a stranger to sign in first
            page.fill("#email", REVIEWER)
            page.fill("#password", PASSWORD)
            page.screenshot(path=shots / "0-sign-in.png", full_page=True)
            page.click("#log-in")
            assert REVIEWER in page.locator("#signed-in").inner_text()
            row = page.locator("#tasks tbody tr").filter(
                has=page.locator("td.business-key", has_text=business_key)
            )
            page.screenshot(path=shots / "1-inbox.png", full_page=True)
            row.locator("a.open-task").click()
            page.fill("#comment", "Checked 50 examples: labels are consistent")
            page.screenshot(path=shots / "2-task.png", full_page=True)
            page.click("#approve")
            notice = page.wait_for_selector("#notice").inner_text()
            page.screenshot(path=shots / "3-after-approval.png", full_page=True)
            assert "with outcome approved" in notice, notice
        finally:
            browser.close()


@pytest.mark.browser
def test_clicking_approve_in_the_inbox_resumes_the_waiting_dag(
    chromium: Path, opentext: Any, run_dag, deferred, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    business_key, record = f"batch-{suffix}", tmp_path / "decision.json"
    shots = ARTIFACTS / f"inbox-approval-{suffix}"
    shots.mkdir(parents=True, exist_ok=True)

    def click_approve() -> None:
        approve_in_inbox(opentext.inbox_url, business_key, shots)

    with acting_in_background(click_approve, after=deferred):
        run = run_dag(
            sensor_tests.approval_dag(
                dag_id=f"inbox_{suffix}",
                business_key=business_key,
                record=str(record),
                deferrable=True,
            )
        )
    assert task_states(run) == {"start": "success", "wait": "success", "record_decision": "success"}
    decision = json.loads(record.read_text())
    assert (decision["approved"], decision["outcome"], decision["approver"]) == (True, "approved", REVIEWER)
    assert sorted(path.name for path in shots.iterdir()) == [
        "0-sign-in.png",
        "1-inbox.png",
        "2-task.png",
        "3-after-approval.png",
    ]


@pytest.mark.browser
def test_a_qa_reviewer_judges_the_sample_in_the_inbox_form(
    chromium: Path, opentext_sandbox_session: Any
) -> None:
    """The QA form in Chromium: marked spans, a verdict per answer, a reason and comment for a failure."""
    from playwright.sync_api import sync_playwright

    from tests.sandbox.opentext.test_inbox import QA_ROUND

    sandbox = opentext_sandbox_session
    suffix = uuid.uuid4().hex[:8]
    instance = sandbox.start_process("qa_review", f"qa-form-{suffix}", QA_ROUND)
    (task,) = sandbox.tasks(processInstanceId=instance["id"])
    shots = ARTIFACTS / f"inbox-qa-form-{suffix}"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{sandbox.inbox_url}/tasks/{task['id']}")
            page.wait_for_selector("#login-form")
            page.fill("#email", "qa@example.com")
            page.fill("#password", PASSWORD)
            page.click("#log-in")
            page.goto(f"{sandbox.inbox_url}/tasks/{task['id']}")
            assert page.locator("#qa-item-1 mark").inner_text() == "Acme"
            page.check("#verdict-1-pass")
            page.check("#verdict-2-fail")
            page.screenshot(path=shots / "0-qa-form.png", full_page=True)
            page.click("#submit-decisions")
            assert "failed without a reason" in page.wait_for_selector("#error").inner_text()
            page.check("#verdict-1-pass")
            page.check("#verdict-2-fail")
            page.select_option("#reason-2", "missed_span")
            page.fill("#comment-2", "Initech is an organisation too.")
            page.screenshot(path=shots / "1-qa-form-filled.png", full_page=True)
            page.click("#submit-decisions")
            notice = page.wait_for_selector("#notice").inner_text()
            page.screenshot(path=shots / "2-after-submit.png", full_page=True)
            assert "QA check of annotation sample" in notice, notice
        finally:
            browser.close()
    values = {
        v["name"]: v["value"]
        for v in sandbox.request("GET", f"/process-instances/{instance['id']}/variables").json()
    }
    assert values["qa_judgements"][1] == {
        "item": "12:ORG@news-bob",
        "verdict": "fail",
        "reason": "missed_span",
        "comment": "Initech is an organisation too.",
    }
