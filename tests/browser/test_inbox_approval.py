"""Reviewers in the OpenText sandbox's inbox, in headless Chromium: an approval resumes the waiting DAG, the
QA form, and a batch review with its review report, a refused outcome and the decision in the history.

Needs Debian's Chromium at /usr/bin/chromium (``make browser`` installs it). Without it these tests skip,
or fail when ``TEST_REQUIRE_SERVICES=1``. Screenshots land in ``test-artifacts/browser/``.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from prodigy_opentext.core.review_report import REVIEW_REPORT_NAME, review_report_html
from tests.browser.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, require_chromium
from tests.core import test_review_report as review_report_tests
from tests.fixtures.airflow_db import task_states
from tests.fixtures.background import acting_in_background
from tests.fixtures.opentext_sandbox import PASSWORD
from tests.sensors import test_opentext_sensor as sensor_tests

REVIEWER = "sme@example.com"

opentext = sensor_tests.opentext
deferred = sensor_tests.deferred
three_annotators = review_report_tests.three_annotators


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


ESCAPED_JSON = re.compile(r"""[{\[]\s*["']|&quot;|&#x27;""")
"""JSON (or a Python repr) printed on a page instead of shown as a table or a list."""


def assert_readable(page: Any, what: str) -> None:
    text = page.locator("body").inner_text()
    assert not ESCAPED_JSON.search(text), f"{what} prints JSON: {ESCAPED_JSON.search(text)}"


@pytest.mark.browser
def test_a_reviewer_reads_the_review_report_decides_and_finds_the_decision_in_the_history(
    chromium: Path, opentext_sandbox_session: Any, three_annotators: list[dict]
) -> None:
    """The batch approval task as the DAG opens it (its variables, the real review report attached as
    text/html): the report opens sandboxed with its charts, an invalid outcome names the valid ones, and
    the task's link shows the decision and comment in the process's history afterwards."""
    from playwright.sync_api import sync_playwright

    sandbox = opentext_sandbox_session
    suffix = uuid.uuid4().hex[:8]
    report = review_report_html(review_report_tests.figures_of(three_annotators))
    instance = sandbox.start_process(
        "annotation_batch_approval",
        f"annotation_batch_approval:brands:b90-{suffix}",
        {
            "dataset": "brands",
            "version": "b90",
            "regulated": False,
            "answers_sha256": hashlib.sha256(json.dumps(three_annotators).encode()).hexdigest(),
            "examples": len(three_annotators),
            "agreement_method": "krippendorff_alpha_nominal",
            "agreement": 0.82,
            "percent_agreement": 0.9,
            "open_disputes": 4,
            "annotators": "brands-alice, brands-bob, brands-carol",
            "review_report": REVIEW_REPORT_NAME,
        },
    )
    attached = sandbox.request(
        "POST",
        f"/process-instances/{instance['id']}/attachments",
        files={"file": (REVIEW_REPORT_NAME, report.encode(), mimetypes.guess_type(REVIEW_REPORT_NAME)[0])},
    )
    assert attached.status_code == 201, attached.text
    (task,) = sandbox.tasks(processInstanceId=instance["id"])
    shots = ARTIFACTS / f"inbox-history-{suffix}"
    shots.mkdir(parents=True, exist_ok=True)
    comment = "Agreement is fine; bob misses trailing brands, noted for the guidelines."
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.goto(f"{sandbox.inbox_url}/tasks/{task['id']}")
            page.fill("#email", REVIEWER)
            page.fill("#password", PASSWORD)
            page.click("#log-in")
            page.wait_for_selector("#task-form")
            page.screenshot(path=shots / "0-task.png", full_page=True)
            assert_readable(page, "the task page")
            listed = page.locator("#attachments tbody tr")
            assert listed.count() == 1
            assert listed.locator("td.type").inner_text() == "text/html"
            assert listed.locator("td.size").inner_text().endswith("kB")

            refused: list[
                str
            ] = []  # what the report's tab logs, e.g. a policy violation, from its first byte
            context.on("console", lambda message: message.page is not page and refused.append(message.text))
            with context.expect_page() as opened:
                listed.locator("a.attachment").click()
            shown = opened.value
            shown.wait_for_load_state()
            chart = shown.locator("figure#answers-per-label svg")
            assert chart.is_visible()
            assert shown.locator("figure#answers-per-label rect.bar").first.bounding_box()["width"] > 0
            assert shown.locator("h1").inner_text().startswith("Review")
            shown.screenshot(path=shots / "1-review-report.png", full_page=True)
            assert not refused, f"the attachment policy blocked part of the report: {refused}"
            shown.close()

            page.fill("#comment", "Not sure yet.")
            page.eval_on_selector("#approve", "button => button.value = 'maybe'")  # a stale or forged form
            page.click("#approve")
            error = page.wait_for_selector("#error").inner_text()
            page.screenshot(path=shots / "2-invalid-outcome.png", full_page=True)
            assert error == "“maybe” is not an outcome of this task: choose one of rejected, approved.", error
            assert [t["id"] for t in sandbox.tasks(processInstanceId=instance["id"])] == [task["id"]]
            assert page.input_value("#comment") == "Not sure yet.", "what the reviewer wrote is kept"

            page.fill("#comment", comment)
            page.click("#approve")
            assert "with outcome approved" in page.wait_for_selector("#notice").inner_text()
            page.screenshot(path=shots / "3-inbox-after-decision.png", full_page=True)
            assert page.locator(f"#recent-{task['id']} td.outcome").inner_text() == "approved"
            assert_readable(page, "the inbox list")

            page.goto(f"{sandbox.inbox_url}/tasks/{task['id']}")
            page.wait_for_selector("#decision")
            page.screenshot(path=shots / "4-history.png", full_page=True)
            assert page.locator("#decision-outcome").inner_text() == "approved"
            assert page.locator("#decision-by").inner_text() == REVIEWER
            assert page.locator("#decision-comments li p").all_inner_texts() == [comment]
            assert page.locator("#process-state").inner_text() == "ended at end_approved (Batch approved)"
            row = page.locator(f'#history tr[data-task-id="{task["id"]}"]')
            assert row.locator("td.assignee").inner_text() == REVIEWER
            assert comment in row.locator("td.task-comments").inner_text()
            assert page.locator("#attachments a.attachment").inner_text() == REVIEW_REPORT_NAME
            assert_readable(page, "the history page")

            page.goto(f"{sandbox.inbox_url}/requests/new")
            assert_readable(page, "the request form")
        finally:
            browser.close()
    assert sorted(path.name for path in shots.iterdir()) == [
        "0-task.png",
        "1-review-report.png",
        "2-invalid-outcome.png",
        "3-inbox-after-decision.png",
        "4-history.png",
    ]
