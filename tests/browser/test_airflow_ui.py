"""An MLOps engineer reviews and releases a batch from the Airflow UI's trigger forms, in headless Chromium.

The stack is the demo's, on free ports and in tmp folders: ``airflow standalone`` with the project's DAGs,
both sandboxes with the BPMN models deployed, and a Prodigy batch annotated and marked ready for review.
The engineer triggers ``annotation_batch_approval`` from its form with the Dataset left empty (a bad name
is refused first), which reviews the next ready batch; an SME approves it in OpenText. Then the engineer
sees the project's DAGs, triggers ``dataset_release`` with the dataset only (the version left empty: the
approved one) and watches the run wait, deferred, for the release sign-off; the release manager approves
it on the OpenText inbox page; the run reaches success in the UI. Screenshots of every step land in
``test-artifacts/browser/airflow-ui-<suffix>/`` (the batch approval's in ``airflow-ui-<suffix>-approval/``).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import requests
from playwright.sync_api import Browser, Locator, Page, expect

from scripts.airflow_api import AirflowApi
from scripts.launchers import (
    DEMO_DATASET_META,
    DEMO_TASKS,
    REVIEWER_PASSWORD,
    AirflowSite,
    Annotators,
    OpenTextClient,
    ProdigyProject,
    start_airflow_standalone,
    start_opentext_sandbox,
)
from scripts.processes import Stack, StackError, free_port, wait_for
from scripts.reviewer import Reviewer
from scripts.stories import DAG_IDS
from scripts.stories.batch_approval import BATCH_DAG, BATCH_PROCESS, SME_REVIEWER
from scripts.stories.release import RELEASE_DAG, RELEASE_MANAGER, SIGNOFF_PROCESS
from tests.browser.conftest import ARTIFACTS, require_chromium

DATASET = "ui_batch"
UI_DATASET_META = {
    **{key: value for key, value in DEMO_DATASET_META.items() if key != "qa_review"},
    "review": {"status": "ready"},
}
"""The demo's meta without QA, marked ready for review: the engineer sends this batch to approval from the
UI directly, as the next ready batch."""
RELEASE_TASKS = (
    "resolve_target",
    "check_batch_approval",
    "stage_data",
    "validate",
    "signoff_request",
    "request_signoff",
    "wait_for_signoff",
    "check_approvals",
    "publish",
    "hand_off",
)
SIGNOFF_GROUP = "release-managers"
WAIT_SECONDS = 600
UI_TIMEOUT_MS = 60_000
"""How long one page element may take to show; the machine may be busy."""
RELOAD_SECONDS = 20
"""How long a page may show an unfinished state before it is reloaded."""

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@dataclass(frozen=True)
class ReleaseSite:
    """A running stack holding one batch approved in OpenText that nobody has released yet."""

    api: AirflowApi
    site: AirflowSite
    reviewer: Reviewer
    opentext: OpenTextClient
    dataset: str
    version: str
    stack: Stack

    def admin_password(self) -> str:
        return admin_password(self.site)


def admin_password(site: AirflowSite) -> str:
    """What a person reads from the file ``airflow standalone`` writes the admin password to."""
    return json.loads(site.password_file.read_text())["admin"]


BatchTrigger = Callable[[AirflowApi, AirflowSite], str]
"""Starts the batch approval run of ``DATASET`` on a running site; returns the run's id."""


def trigger_by_api(api: AirflowApi, site: AirflowSite) -> str:
    return api.trigger(BATCH_DAG, {"dataset": DATASET})["dag_run_id"]


def approve_batch(api: AirflowApi, reviewer: Reviewer, stack: Stack, run_id: str) -> str:
    """Approve the batch approval run's OpenText task as the SME once it asks, and wait for the run.

    ``dataset_release`` stays paused meanwhile, so the release run batch approval starts only queues; it is
    deleted, leaving the batch approved and unreleased. Returns the batch's version.
    """
    task = reviewer.wait_for_task(BATCH_PROCESS, {"dataset": DATASET}, timeout=WAIT_SECONDS, stack=stack)
    reviewer.decide(task, SME_REVIEWER, "approved", "Spot-checked the batch: labels are consistent.")
    ended = api.wait_for_run(BATCH_DAG, run_id, timeout=WAIT_SECONDS, stack=stack)
    if ended["state"] != "success":
        raise StackError(api.failure_report(BATCH_DAG, run_id))
    reviewed = api.xcom(BATCH_DAG, run_id, "find_batch")["dataset"]
    if reviewed != DATASET:
        raise StackError(f"batch approval run {run_id} reviewed {reviewed!r}, not {DATASET!r}")
    queued = api.runs(RELEASE_DAG)
    if len(queued) != 1:
        raise StackError(f"batch approval should have queued one {RELEASE_DAG} run, found {queued}")
    run_path = requests.utils.quote(queued[0]["dag_run_id"], safe="")
    api.request("DELETE", f"/dags/{RELEASE_DAG}/dagRuns/{run_path}")
    api.set_paused(RELEASE_DAG, False)
    return queued[0]["conf"]["version"]


@contextmanager
def release_site(tmp: Path, trigger_batch: BatchTrigger = trigger_by_api) -> Iterator[ReleaseSite]:
    """The demo's stack in ``tmp`` on free ports, with a batch approved through the run ``trigger_batch``
    starts (by default over the REST API); every process stopped after.

    The scheduler creates no scheduled runs (``use_job_schedule`` off): a batch approval run on the
    half hour would otherwise take up the same batch while the test's run records its decision.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODIGY_")}
    with Stack(tmp / "logs") as stack:
        try:
            opentext = start_opentext_sandbox(stack, free_port(), tmp / "opentext.db", env)
            reviewer = Reviewer(opentext)
            reviewer.deploy_models()
            prodigy = ProdigyProject.sqlite(tmp / "prodigy")
            prodigy.annotated_batch(
                stack, DATASET, UI_DATASET_META, DEMO_TASKS, free_port(), env, (Annotators(disagree=0.0),)
            )
            home = tmp / "airflow-home"
            home.mkdir()
            site = AirflowSite(home, tmp / "data", free_port(), f"sqlite:///{tmp / 'airflow.db'}")
            connections = {
                "AIRFLOW_CONN_PRODIGY_DEFAULT": prodigy.connection(),
                "AIRFLOW_CONN_OPENTEXT_DEFAULT": opentext.connection(),
                "OPENTEXT_POLL_SECONDS": "3",
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            }
            api = start_airflow_standalone(stack, site, site.environment(env, connections))
            api.wait_for_dags(DAG_IDS, timeout=WAIT_SECONDS, stack=stack)
            api.set_paused(BATCH_DAG, False)
            version = approve_batch(api, reviewer, stack, trigger_batch(api, site))
            yield ReleaseSite(api, site, reviewer, opentext, DATASET, version, stack)
        finally:
            stack.stop_all()
            leftovers = stack.marked_processes()
    assert not leftovers, f"processes left running after teardown: {leftovers}"


@contextmanager
def new_page(browser: Browser) -> Iterator[Page]:
    """A page in a fresh browser context (nobody logged in), closed after."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="module")
def approved_batch(tmp_path_factory: pytest.TempPathFactory, browser: Browser) -> Iterator[ReleaseSite]:
    """The stack, with the batch approved through a run triggered from the form with the Dataset empty."""
    require_chromium()
    shots = Screenshots(ARTIFACTS / f"airflow-ui-{uuid.uuid4().hex[:8]}-approval")

    def from_the_form(api: AirflowApi, site: AirflowSite) -> str:
        with new_page(browser) as page, shots.on_failure(page):
            log_in(page, api.url, admin_password(site), shots)
            return trigger_with_empty_dataset(page, api, shots)

    with release_site(tmp_path_factory.mktemp("airflow-ui"), from_the_form) as site:
        assert shots.taken == [
            "1-login.png",
            "2-approval-form-bad-name.png",
            "3-approval-form-empty.png",
            "4-approval-run-triggered.png",
        ]
        yield site


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with new_page(browser) as page:
        yield page


class Screenshots:
    """Numbered full-page screenshots of one test, in its own artifacts folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.taken: list[str] = []

    def take(self, page: Page, name: str) -> None:
        file_name = f"{len(self.taken) + 1}-{name}.png"
        page.screenshot(path=self.folder / file_name, full_page=True)
        self.taken.append(file_name)

    @contextmanager
    def on_failure(self, page: Page) -> Iterator[None]:
        """Keep what the page showed when a step failed, as ``failure.png``."""
        try:
            yield
        except BaseException:
            page.screenshot(path=self.folder / "failure.png", full_page=True)
            raise


def state_badge(page: Page, row_link: str) -> Locator:
    """The state badge in the table row that links to ``row_link`` (a run id or a task id)."""
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=row_link, exact=True))
    return row.get_by_test_id("state-badge")


def wait_for_state(page: Page, row_link: str, states: tuple[str, ...], stack: Stack) -> str:
    """Wait until the row linking to ``row_link`` shows one of ``states``, reloading the page meanwhile."""
    shown = re.compile(rf"^({'|'.join(states)})$")

    def state_shown() -> str | None:
        badge = state_badge(page, row_link)
        try:
            expect(badge).to_have_text(shown, timeout=RELOAD_SECONDS * 1000)
        except AssertionError:
            page.reload()
            return None
        return badge.inner_text()

    return wait_for(
        state_shown, timeout=WAIT_SECONDS, what=f"{row_link} to show {' or '.join(states)}", stack=stack
    )


def wait_for_signoff_task(site: ReleaseSite, run_id: str) -> dict[str, Any]:
    """The release's open sign-off task in OpenText; a run that fails before asking for it fails at once."""
    wanted = {"dataset": site.dataset, "version": site.version}

    def open_task() -> dict[str, Any] | None:
        if site.api.run(RELEASE_DAG, run_id)["state"] == "failed":
            raise AssertionError(site.api.failure_report(RELEASE_DAG, run_id))
        return site.reviewer.find_task(SIGNOFF_PROCESS, wanted)

    return wait_for(open_task, timeout=WAIT_SECONDS, what="the release sign-off task", stack=site.stack)


def log_in(page: Page, url: str, password: str, shots: Screenshots) -> None:
    page.goto(url)
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(password)
    shots.take(page, "login")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/")


def open_trigger_form(page: Page, dag_id: str) -> Locator:
    """Open the DAG's page from the Dags list and its trigger form; returns the form's dialog."""
    page.get_by_role("link", name="Dags", exact=True).first.click()
    page.get_by_role("link", name=dag_id, exact=True).click()
    expect(page.get_by_role("heading", name=dag_id, exact=True)).to_be_visible()
    page.get_by_role("button", name="Trigger Dag").click()
    form = page.get_by_role("dialog")
    expect(form.get_by_role("heading", name=f"Trigger Dag - {dag_id}")).to_be_visible()
    return form


def param_field(page: Page, form: Locator, title: str) -> Locator:
    """The text box of the Param whose title is ``title``."""
    label = page.locator("label", has_text=re.compile(rf"^{title}\b"))
    return form.get_by_role("group").filter(has=label).get_by_role("textbox")


def submit(page: Page, form: Locator, dag_id: str) -> str:
    """Trigger from the form; returns the run id of the run page the UI opens."""
    form.get_by_role("button", name="Trigger", exact=True).click()
    page.wait_for_url(re.compile(rf"/dags/{dag_id}/runs/manual__"))
    run_id = unquote(page.url.rstrip("/").rsplit("/", 1)[-1])
    expect(page.get_by_role("heading", name=run_id, exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)
    return run_id


def trigger_with_empty_dataset(page: Page, api: AirflowApi, shots: Screenshots) -> str:
    """Batch approval from its form: a name that cannot be a dataset is refused, an empty one is taken (the
    next ready batch); returns the run id."""
    form = open_trigger_form(page, BATCH_DAG)
    dataset = param_field(page, form, "Dataset")
    expect(dataset).to_have_value("")
    dataset.fill("../ui_batch")
    form.get_by_role("button", name="Trigger", exact=True).click()
    expect(form).to_contain_text("does not match")
    shots.take(page, "approval-form-bad-name")
    assert api.runs(BATCH_DAG) == []
    page.mouse.move(0, 0)  # a toast under the pointer stays, covering the Trigger button
    expect(page.get_by_text("Failed to Trigger Dag")).to_be_hidden(timeout=UI_TIMEOUT_MS)
    dataset.fill("")
    shots.take(page, "approval-form-empty")
    run_id = submit(page, form, BATCH_DAG)
    shots.take(page, "approval-run-triggered")
    assert api.run(BATCH_DAG, run_id)["conf"].get("dataset") is None
    return run_id


def trigger_release(page: Page, dataset: str, shots: Screenshots) -> str:
    """Fill the release form's Dataset, leave its Version empty (the approved one) and trigger; returns the
    run id the UI opens."""
    form = open_trigger_form(page, RELEASE_DAG)
    param_field(page, form, "Dataset").fill(dataset)
    expect(param_field(page, form, "Version")).to_have_value("")
    shots.take(page, "trigger-form")
    return submit(page, form, RELEASE_DAG)


def approve_in_inbox(page: Page, inbox_url: str, task: dict[str, Any], shots: Screenshots) -> None:
    """As the release manager: sign in to the inbox, open the group's sign-off task, comment and approve."""
    page.goto(f"{inbox_url}?group={SIGNOFF_GROUP}")
    page.fill("#email", RELEASE_MANAGER)
    page.fill("#password", REVIEWER_PASSWORD)
    shots.take(page, "inbox-sign-in")
    page.click("#log-in")
    expect(page.locator("#signed-in")).to_contain_text(RELEASE_MANAGER)
    shots.take(page, "inbox")
    page.locator(f"#task-{task['id']}").locator("a.open-task").click()
    page.fill("#comment", "Validation passed: released for training.")
    shots.take(page, "signoff-task")
    page.click("#approve")
    notice = page.locator("#notice").inner_text()
    shots.take(page, "signoff-approved")
    assert "with outcome approved" in notice, notice


def test_release_triggered_from_the_ui_succeeds_after_signoff_in_the_inbox(
    approved_batch: ReleaseSite, page: Page
) -> None:
    site, api = approved_batch, approved_batch.api
    shots = Screenshots(ARTIFACTS / f"airflow-ui-{uuid.uuid4().hex[:8]}")
    with shots.on_failure(page):
        log_in(page, api.url, site.admin_password(), shots)
        page.get_by_role("link", name="Dags", exact=True).first.click()
        expect(page.get_by_role("heading", name=f"{len(DAG_IDS)} Dags")).to_be_visible()
        for dag_id in DAG_IDS:
            expect(page.get_by_role("link", name=dag_id, exact=True)).to_be_visible()
        shots.take(page, "dags")

        run_id = trigger_release(page, site.dataset, shots)
        shots.take(page, "run-triggered")
        conf = api.run(RELEASE_DAG, run_id)["conf"]
        assert (conf["dataset"], conf.get("version")) == (site.dataset, None)

        signoff = wait_for_signoff_task(site, run_id)
        run_page = page.url
        waiting = wait_for_state(page, "wait_for_signoff", ("Deferred", "Failed"), site.stack)
        assert waiting == "Deferred", api.failure_report(RELEASE_DAG, run_id)
        shots.take(page, "waiting-for-signoff")

        approve_in_inbox(page, site.opentext.inbox_url, signoff, shots)

        page.goto(f"{api.url}/dags/{RELEASE_DAG}/runs")
        state = wait_for_state(page, run_id, ("Success", "Failed"), site.stack)
        shots.take(page, "run-succeeded")
        assert state == "Success", api.failure_report(RELEASE_DAG, run_id)
        page.goto(run_page)
        for task_id in RELEASE_TASKS:
            expect(state_badge(page, task_id)).to_have_text("Success", timeout=UI_TIMEOUT_MS)
        shots.take(page, "task-instances")

    assert api.run(RELEASE_DAG, run_id)["state"] == "success"
    target = api.xcom(RELEASE_DAG, run_id, "resolve_target")
    assert (target["dataset"], target["version"]) == (site.dataset, site.version)
    release = api.xcom(RELEASE_DAG, run_id, "publish")
    manifest = json.loads(Path(release["manifest"]).read_text())
    assert {approval["kind"] for approval in manifest["approvals"]} == {"batch_approval", "release_signoff"}
    assert sorted(path.name for path in shots.folder.iterdir()) == sorted(shots.taken)
    assert shots.taken == [
        "1-login.png",
        "2-dags.png",
        "3-trigger-form.png",
        "4-run-triggered.png",
        "5-waiting-for-signoff.png",
        "6-inbox-sign-in.png",
        "7-inbox.png",
        "8-signoff-task.png",
        "9-signoff-approved.png",
        "10-run-succeeded.png",
        "11-task-instances.png",
    ]
