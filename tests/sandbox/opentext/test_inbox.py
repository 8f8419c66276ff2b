"""The reviewer inbox over HTTP (its element ids are the contract browser tests rely on) and the
reviewer CLI against a running sandbox."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import requests
from lxml import html

from tests.fixtures.opentext_sandbox import PASSWORD, REPO, OpenTextSandbox


def _page(response: requests.Response) -> html.HtmlElement:
    return html.fromstring(response.text)


def _ids(page: html.HtmlElement, element_id: str) -> list[html.HtmlElement]:
    return page.xpath(f'//*[@id="{element_id}"]')


def _signed_in(sandbox: OpenTextSandbox, email: str, password: str = PASSWORD) -> requests.Session:
    """A browser session of ``email`` after the sign-in form."""
    session = requests.Session()
    response = session.post(
        f"{sandbox.inbox_url}/login",
        data={"tenant": sandbox.tenant, "email": email, "password": password},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 303, response.text
    return session


def _inbox(session: requests.Session, sandbox: OpenTextSandbox, **params: str) -> html.HtmlElement:
    response = session.get(sandbox.inbox_url, params=params, timeout=30)
    assert response.status_code == 200
    return _page(response)


def _post(
    session: requests.Session, sandbox: OpenTextSandbox, task_id: str, **form: str
) -> requests.Response:
    url = f"{sandbox.inbox_url}/tasks/{task_id}"
    return session.post(url, data=form, allow_redirects=False, timeout=30)


def test_pages_need_a_sign_in_and_a_wrong_password_is_refused(sandbox: OpenTextSandbox, business_key):
    instance = sandbox.start_process("qa_review", business_key)
    (task,) = sandbox.tasks(processInstanceId=instance["id"])
    for path in ("", f"/tasks/{task['id']}"):
        anonymous = requests.get(sandbox.inbox_url + path, allow_redirects=False, timeout=30)
        assert anonymous.status_code == 303
        assert anonymous.headers["location"].startswith("/inbox/login?next=")
    forged = requests.post(
        f"{sandbox.inbox_url}/tasks/{task['id']}", data={"outcome": "pass"}, allow_redirects=False, timeout=30
    )
    assert forged.status_code == 303 and forged.headers["location"].startswith("/inbox/login")
    wrong = requests.post(
        f"{sandbox.inbox_url}/login",
        data={"tenant": sandbox.tenant, "email": "qa@example.com", "password": "guess"},
        timeout=30,
    )
    assert wrong.status_code == 401
    assert "password is wrong" in _page(wrong).get_element_by_id("error").text
    assert sandbox.tasks(processInstanceId=instance["id"])[0]["assignee"] is None

    session = _signed_in(sandbox, "qa@example.com")
    listing = _inbox(session, sandbox)
    assert "qa@example.com" in listing.get_element_by_id("signed-in").text_content()
    assert _ids(listing, f"task-{task['id']}")
    session.post(f"{sandbox.inbox_url}/logout", timeout=30)
    assert session.get(sandbox.inbox_url, allow_redirects=False, timeout=30).status_code == 303


def test_reviewer_claims_and_approves_with_a_comment(sandbox: OpenTextSandbox, business_key):
    instance = sandbox.start_process(
        "annotation_batch_approval",
        business_key,
        {"regulated": False, "dataset": "ner_news_v2", "examples": 120},
    )
    (task,) = sandbox.tasks(processInstanceId=instance["id"])
    sme = _signed_in(sandbox, "sme@example.com")

    listing = _inbox(sme, sandbox, group="annotation-sme")
    row = listing.get_element_by_id(f"task-{task['id']}")
    assert row.find_class("business-key")[0].text == business_key
    link = row.find_class("open-task")[0].get("href")

    page = _page(sme.get(sandbox.url + link, timeout=30))
    assert page.get_element_by_id("task-name").text == "SME review of annotation batch"
    assert page.get_element_by_id("candidate-groups").text == "annotation-sme"
    (dataset_value,) = page.xpath('//table[@id="variables"]//tr[@data-variable="dataset"]/td[@class="value"]')
    assert dataset_value.text_content() == "ner_news_v2"
    assert [b.get("id") for b in page.xpath('//form[@id="task-form"]//button')] == [
        "claim",
        "reject",
        "approve",
    ]

    claimed = _post(sme, sandbox, task["id"], action="claim")
    assert claimed.status_code == 303
    claimed_page = _page(sme.get(sandbox.url + claimed.headers["location"], timeout=30))
    assert claimed_page.get_element_by_id("assignee").text == "sme@example.com"
    assert claimed_page.get_element_by_id("notice").text == "Claimed by sme@example.com."
    assert not _ids(claimed_page, "claim")

    done = _post(sme, sandbox, task["id"], outcome="approved", comment="Consistent spans.")
    assert done.status_code == 303
    after = _page(sme.get(sandbox.url + done.headers["location"], timeout=30))
    assert "with outcome approved" in after.get_element_by_id("notice").text
    assert not _ids(after, f"task-{task['id']}")

    history = sandbox.historic_instance(instance["id"])
    assert history["endActivityId"] == "end_approved"
    task_history = sandbox.request("GET", f"/historic-task-instances/{task['id']}").json()
    assert (task_history["assignee"], task_history["outcome"]) == ("sme@example.com", "approved")
    comments = sandbox.request("GET", f"/process-instances/{instance['id']}/comments").json()
    assert [(c["author"], c["message"], c["taskId"]) for c in comments] == [
        ("sme@example.com", "Consistent spans.", task["id"])
    ]
    recent = after.get_element_by_id(f"recent-{task['id']}")
    assert recent.find_class("outcome")[0].text == "approved", "the list links to what the user decided"
    assert recent.find_class("open-history")[0].get("href") == link


def _history(page: html.HtmlElement) -> list[dict[str, str]]:
    """The rows of a history page's task table, by column class."""
    return [
        {cell.get("class"): cell.text_content().strip() for cell in row.xpath("td")}
        for row in page.xpath('//table[@id="history"]/tbody/tr')
    ]


def test_a_closed_tasks_link_shows_its_decision_and_the_processs_history(
    sandbox: OpenTextSandbox, business_key
):
    instance = sandbox.start_process(
        "annotation_batch_approval", business_key, {"regulated": True, "dataset": "claims", "examples": 40}
    )
    (sme_task,) = sandbox.tasks(processInstanceId=instance["id"])
    sme = _signed_in(sandbox, "sme@example.com")
    assert _post(sme, sandbox, sme_task["id"], action="claim").status_code == 303
    done = _post(sme, sandbox, sme_task["id"], outcome="approved", comment="Spans are consistent.")
    assert done.status_code == 303
    (compliance,) = sandbox.tasks(processInstanceId=instance["id"])
    sandbox.request(
        "POST", f"/process-instances/{instance['id']}/comments", json={"message": "Exported for review."}
    )

    page = _page(sme.get(f"{sandbox.inbox_url}/tasks/{sme_task['id']}", timeout=30))
    assert page.get_element_by_id("task-name").text == "SME review of annotation batch"
    assert page.get_element_by_id("decision-outcome").text == "approved"
    assert page.get_element_by_id("decision-by").text == "sme@example.com"
    assert page.get_element_by_id("decision-time").text, "when it was decided"
    assert [c.text_content() for c in page.xpath('//ul[@id="decision-comments"]/li/p')] == [
        "Spans are consistent."
    ]
    assert not _ids(page, "task-form"), "a closed task offers nothing to do"
    assert (
        page.get_element_by_id("process-state").text
        == "running, waiting at Compliance review of regulated batch"
    )
    rows = _history(page)
    assert [(r["name"], r["groups"], r["assignee"], r["outcome"]) for r in rows] == [
        ("SME review of annotation batch", "annotation-sme", "sme@example.com", "approved"),
        ("Compliance review of regulated batch", "compliance-officers", "", "open"),
    ]
    assert rows[0]["claimed"] and rows[0]["ended"] and not rows[1]["ended"]
    assert rows[0]["task-comments"].endswith("Spans are consistent.")
    assert "Exported for review." in page.get_element_by_id("process-comments").text_content()

    officer = _signed_in(sandbox, "officer@example.com")
    sandbox.claim(compliance["id"], "officer@example.com")
    handed = {"action": "delegate", "assignee": "deputy@example.com"}
    sandbox.request("POST", f"/tasks/{compliance['id']}", user="officer@example.com", json=handed)
    delegated = _history(_page(officer.get(f"{sandbox.inbox_url}/processes/{instance['id']}", timeout=30)))
    assert delegated[1]["assignee"] == "deputy@example.com (delegated by officer@example.com)"
    sandbox.set_user_groups("deputy@example.com", [])
    sandbox.request(
        "POST", f"/tasks/{compliance['id']}", user="deputy@example.com", json={"action": "resolve"}
    )
    sandbox.complete(compliance["id"], "rejected", "officer@example.com", comment="No consent on file.")
    by_process = officer.get(f"{sandbox.inbox_url}/processes/{instance['id']}", timeout=30)
    assert by_process.status_code == 200
    process_page = _page(by_process)
    assert process_page.get_element_by_id("process-state").text == "ended at end_rejected (Batch rejected)"
    assert process_page.get_element_by_id("business-key").text == business_key
    decided = _history(process_page)
    assert [(r["assignee"], r["outcome"]) for r in decided] == [
        ("sme@example.com", "approved"),
        ("officer@example.com", "rejected"),
    ]
    assert decided[1]["task-comments"].endswith("No consent on file."), (
        "a comment its decider made on the process while the task was open goes with the task"
    )
    assert "No consent" not in process_page.get_element_by_id("process-comments").text_content()
    assert not _ids(process_page, "decision")

    again = _post(sme, sandbox, sme_task["id"], outcome="rejected")
    assert again.status_code == 409, "a second decision on a closed task changes nothing"
    assert _page(again).get_element_by_id("error").text == "This task is not open any more."
    assert _page(again).get_element_by_id("decision-outcome").text == "approved"

    withdrawn = sandbox.start_process("annotation_batch_approval", business_key, {"regulated": False})
    (left,) = sandbox.tasks(processInstanceId=withdrawn["id"])
    sandbox.request("DELETE", f"/process-instances/{withdrawn['id']}", params={"deleteReason": "superseded"})
    closed = _page(sme.get(f"{sandbox.inbox_url}/tasks/{left['id']}", timeout=30))
    assert closed.get_element_by_id("decision-outcome").text == "ended without a decision: superseded"
    assert closed.get_element_by_id("process-state").text == "ended: deleted (superseded)"
    for missing in ("/tasks/no-such-task", "/processes/no-such-process"):
        gone = sme.get(sandbox.inbox_url + missing, timeout=30)
        assert gone.status_code == 404 and _ids(_page(gone), "error")
    anonymous = requests.get(
        f"{sandbox.inbox_url}/processes/{instance['id']}", allow_redirects=False, timeout=30
    )
    assert anonymous.status_code == 303, "history needs a sign-in as every inbox page does"


def test_outcome_buttons_follow_the_model(sandbox: OpenTextSandbox, business_key):
    improvement = sandbox.start_process("model_improvement_request", business_key)
    (improvement_task,) = sandbox.tasks(processInstanceId=improvement["id"])
    page = _page(
        _signed_in(sandbox, "ml@example.com").get(
            f"{sandbox.inbox_url}/tasks/{improvement_task['id']}", timeout=30
        )
    )
    assert [(b.get("id"), b.get("value")) for b in page.xpath('//button[@class="outcome"]')] == [
        ("approve", "approved"),
        ("reject", "rejected"),
    ]
    qa = sandbox.start_process("qa_review", business_key, {"rework_round": 3})
    (check,) = sandbox.tasks(processInstanceId=qa["id"])
    sandbox.complete(check["id"], None, "qa@example.com")
    (record,) = sandbox.tasks(processInstanceId=qa["id"])
    sandbox.complete(record["id"], None, None, variables={"qa_result": "escalated"})
    (lead_task,) = sandbox.tasks(processInstanceId=qa["id"])
    page = _page(
        _signed_in(sandbox, "lead@example.com").get(
            f"{sandbox.inbox_url}/tasks/{lead_task['id']}", timeout=30
        )
    )
    assert [(b.get("id"), b.get("value")) for b in page.xpath('//button[@class="outcome"]')] == [
        ("outcome-accepted", "accepted"),
        ("reject", "rejected"),
    ], "the leads' form shows the figures beside the model's declared outcomes"
    intake = sandbox.start_process("annotation_request_intake", business_key)
    (approval,) = sandbox.tasks(processInstanceId=intake["id"])
    sandbox.complete(approval["id"], "approved", "owner@example.com")
    (provision,) = sandbox.tasks(processInstanceId=intake["id"])
    owner = _signed_in(sandbox, "owner@example.com")
    page = _page(owner.get(f"{sandbox.inbox_url}/tasks/{provision['id']}", timeout=30))
    assert not page.xpath('//button[@class="outcome"]')
    assert _ids(page, "complete") and page.xpath('//input[@id="outcome"]')
    refused = _post(owner, sandbox, provision["id"], action="complete")
    assert refused.status_code == 403
    assert "airflow-service" in _page(refused).get_element_by_id("error").text
    sandbox.complete(provision["id"], None, None, variables={"provisioned": False})  # Airflow's own step
    assert sandbox.historic_instance(intake["id"])["endActivityId"] == "end_source_refused"


def test_inbox_shows_what_a_reviewer_may_do_and_refuses_the_rest(sandbox: OpenTextSandbox, business_key):
    sandbox.set_user_groups("leads@example.com", ["ml-leads"])
    sandbox.set_user_groups("stranger@example.com", [])
    instance = sandbox.start_process("model_improvement_request", business_key)
    (task,) = sandbox.tasks(processInstanceId=instance["id"])
    leads, stranger = _signed_in(sandbox, "leads@example.com"), _signed_in(sandbox, "stranger@example.com")
    assert _ids(_inbox(leads, sandbox), f"task-{task['id']}")
    assert not _ids(_inbox(stranger, sandbox), f"task-{task['id']}")
    assert _ids(_inbox(leads, sandbox, group="nobody-group"), "no-tasks")

    not_a_member = _post(stranger, sandbox, task["id"], outcome="approved")
    assert not_a_member.status_code == 403
    assert "not a candidate" in _page(not_a_member).get_element_by_id("error").text
    sandbox.claim(task["id"], "leads@example.com")
    taken = _post(stranger, sandbox, task["id"], outcome="approved")
    assert taken.status_code == 409
    assert "claimed by leads@example.com" in _page(taken).get_element_by_id("error").text
    wrong_outcome = _post(leads, sandbox, task["id"], outcome="perhaps", comment="Maybe later.")
    assert wrong_outcome.status_code == 400
    refused = _page(wrong_outcome)
    assert refused.get_element_by_id("error").text == (
        "“perhaps” is not an outcome of this task: choose one of approved, rejected."
    )
    assert refused.get_element_by_id("task-name").text == "Approve model improvement request"
    assert _ids(refused, "approve"), "the task page again, to decide with a valid outcome"
    assert refused.get_element_by_id("comment").text == "Maybe later.", "the comment waits in its field"
    no_outcome = _post(leads, sandbox, task["id"], action="complete")
    assert no_outcome.status_code == 400
    assert "Choose an outcome: choose one of approved" in _page(no_outcome).get_element_by_id("error").text
    assert [t["id"] for t in sandbox.tasks(processInstanceId=instance["id"])] == [task["id"]]
    assert sandbox.request("GET", f"/process-instances/{instance['id']}/comments").json() == []


def _cli(sandbox: OpenTextSandbox, *args: str) -> subprocess.CompletedProcess[str]:
    client = f"{sandbox.client_id}:{sandbox.client_secret}"
    return subprocess.run(
        [
            *(sys.executable, "-m", "sandbox.opentext", *args),
            *("--url", sandbox.url, "--client", client, "--tenant", sandbox.tenant),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )


def test_cli_lists_claims_and_completes(sandbox: OpenTextSandbox, business_key):
    instance = sandbox.start_process("dataset_release_signoff", business_key)
    (task,) = sandbox.tasks(processInstanceId=instance["id"])

    listed = _cli(sandbox, "tasks", "--group", "release-managers", "--json")
    assert listed.returncode == 0, listed.stderr
    assert task["id"] in {t["id"] for t in json.loads(listed.stdout)}

    sandbox.set_user_groups("other@example.com", ["release-managers"])
    claimed = _cli(sandbox, "claim", "--user", "rm@example.com", "--password", PASSWORD, task["id"])
    assert claimed.returncode == 0, claimed.stderr
    refused = _cli(sandbox, "claim", "--user", "other@example.com", "--password", PASSWORD, task["id"])
    assert refused.returncode == 1 and "already claimed" in refused.stderr
    wrong = _cli(sandbox, "claim", "--user", "rm@example.com", "--password", "guess", task["id"])
    assert wrong.returncode == 1 and "password is wrong" in wrong.stderr

    completed = _cli(
        sandbox,
        "complete",
        "--user",
        "rm@example.com",
        "--password",
        PASSWORD,
        "--outcome",
        "approved",
        "--comment",
        "Ship it.",
        task["id"],
    )
    assert completed.returncode == 0, completed.stderr
    assert sandbox.historic_instance(instance["id"])["endActivityId"] == "end_approved"
    comments = sandbox.request("GET", f"/process-instances/{instance['id']}/comments").json()
    assert [(c["author"], c["message"], c["taskId"]) for c in comments] == [
        ("rm@example.com", "Ship it.", task["id"])
    ], "made on the task, so its history shows it beside the decision"


CASE = [
    {
        "item": "11:ORG",
        "label": "ORG",
        "text": "Acme hires",
        "reasons": ["conflict"],
        "agreement": 0.5,
        "versions": [
            {
                "version": "v1",
                "answer": "accept",
                "spans": [{"start": 0, "end": 4, "label": "ORG"}],
                "accept": [],
                "sessions": ["news-alice"],
            },
            {"version": "v2", "answer": "reject", "spans": [], "accept": [], "sessions": ["news-bob"]},
        ],
    },
    {
        "item": "12:ORG",
        "label": "ORG",
        "text": "Nothing here",
        "reasons": ["ignored"],
        "agreement": 1.0,
        "versions": [
            {"version": "v1", "answer": "reject", "spans": [], "accept": [], "sessions": ["news-alice"]}
        ],
    },
]


def test_the_dispute_form_shows_the_case_and_submits_one_decision_per_item(
    sandbox: OpenTextSandbox, business_key
):
    instance = sandbox.start_process(
        "label_dispute_resolution",
        business_key,
        {"dataset": "news", "examples": CASE, "escalation_after": "PT4H"},
    )
    (task,) = sandbox.tasks(processInstanceId=instance["id"])
    senior = _signed_in(sandbox, "senior@example.com")
    page = _page(senior.get(f"{sandbox.inbox_url}/tasks/{task['id']}", timeout=30))
    assert [f.get("data-item") for f in page.xpath('//fieldset[starts-with(@id, "item-")]')] == [
        "11:ORG",
        "12:ORG",
    ]
    assert page.xpath('//fieldset[@id="item-1"]//mark')[0].text == "Acme", "the version's span is marked"
    assert _ids(page, "choice-1-v2") and _ids(page, "choice-2-rejected")
    assert not page.xpath('//tr[@data-variable="examples"]'), "the case is shown by the form, not as JSON"
    assert not page.xpath('//button[@class="outcome"]')

    half = _post(senior, sandbox, task["id"], action="decide", **{"choice-1": "v2"})
    assert half.status_code == 400
    assert "item 2 has no decision" in _page(half).get_element_by_id("error").text
    assert [t["id"] for t in sandbox.tasks(processInstanceId=instance["id"])] == [task["id"]], "still open"

    done = _post(senior, sandbox, task["id"], action="decide", **{"choice-1": "v2", "choice-2": "rejected"})
    assert done.status_code == 303, done.text
    (check,) = sandbox.tasks(processInstanceId=instance["id"])
    assert check["taskDefinitionKey"] == "check_decisions"
    values = {
        v["name"]: v["value"]
        for v in sandbox.request("GET", f"/process-instances/{instance['id']}/variables").json()
    }
    assert values["adjudications"] == [
        {"item": "11:ORG", "decision": "chosen", "version": "v2"},
        {"item": "12:ORG", "decision": "rejected"},
    ]
    history = sandbox.request("GET", f"/historic-task-instances/{task['id']}").json()
    assert (history["assignee"], history["outcome"]) == ("senior@example.com", "decided")


SAMPLE = [
    {
        "item": "11:ORG@news-alice",
        "input_hash": 11,
        "label": None,
        "text": "Acme buys Initech",
        "annotator": "news-alice",
        "stratum": "ORG|news-alice",
        "answer": "accept",
        "spans": [{"start": 0, "end": 4, "label": "ORG"}],
        "accept": [],
    },
    {
        "item": "12:ORG@news-bob",
        "input_hash": 12,
        "label": None,
        "text": "Nothing here",
        "annotator": "news-bob",
        "stratum": "None|news-bob",
        "answer": "accept",
        "spans": [],
        "accept": [],
    },
]
QA_ROUND = {
    "dataset": "news",
    "rework_round": 1,
    "max_rounds": 2,
    "population": 40,
    "max_error_rate": 0.1,
    "confidence": 0.95,
    "sample": SAMPLE,
    "strata": {
        "ORG|news-alice": {"population": 20, "sampled": 1},
        "None|news-bob": {"population": 20, "sampled": 1},
    },
    "qa_reasons": ["wrong_label", "missed_span", "other"],
}


def test_the_qa_form_shows_the_sample_and_submits_one_judgement_per_answer(
    sandbox: OpenTextSandbox, business_key
):
    instance = sandbox.start_process("qa_review", business_key, QA_ROUND)
    (task,) = sandbox.tasks(processInstanceId=instance["id"])
    qa = _signed_in(sandbox, "qa@example.com")
    page = _page(qa.get(f"{sandbox.inbox_url}/tasks/{task['id']}", timeout=30))
    assert [f.get("data-item") for f in page.xpath('//fieldset[starts-with(@id, "qa-item-")]')] == [
        "11:ORG@news-alice",
        "12:ORG@news-bob",
    ]
    assert page.xpath('//fieldset[@id="qa-item-1"]//mark')[0].text == "Acme", "the answer's span is marked"
    assert [o.get("value") for o in page.xpath('//select[@id="reason-2"]/option')] == [
        "",
        "wrong_label",
        "missed_span",
        "other",
    ]
    strata = [
        [c.text_content() for c in row.xpath("td")]
        for row in page.xpath('//table[@id="qa-sample-strata"]/tbody/tr')
    ]
    assert strata == [["ORG", "news-alice", "20", "1"], ["(no label)", "news-bob", "20", "1"]]
    assert "within 10.0%" in page.get_element_by_id("qa-rule").text_content()
    assert not page.xpath('//tr[@data-variable="sample"]'), "the sample is shown by the form, not as JSON"

    unjudged = _post(qa, sandbox, task["id"], action="decide", **{"verdict-1": "pass"})
    assert unjudged.status_code == 400
    assert "answer 2 has no verdict" in _page(unjudged).get_element_by_id("error").text
    no_reason = _post(qa, sandbox, task["id"], action="decide", **{"verdict-1": "pass", "verdict-2": "fail"})
    assert "answer 2 failed without a reason" in _page(no_reason).get_element_by_id("error").text
    other = _post(
        qa,
        sandbox,
        task["id"],
        action="decide",
        **{"verdict-1": "pass", "verdict-2": "fail", "reason-2": "other"},
    )
    assert "say in its comment what is wrong" in _page(other).get_element_by_id("error").text
    assert [t["id"] for t in sandbox.tasks(processInstanceId=instance["id"])] == [task["id"]], "still open"

    form = {"verdict-1": "pass", "verdict-2": "fail", "reason-2": "missed_span", "comment-2": " Initech "}
    done = _post(qa, sandbox, task["id"], action="decide", **form)
    assert done.status_code == 303, done.text
    (record,) = sandbox.tasks(processInstanceId=instance["id"])
    assert record["taskDefinitionKey"] == "record_qa"
    values = {
        v["name"]: v["value"]
        for v in sandbox.request("GET", f"/process-instances/{instance['id']}/variables").json()
    }
    assert values["qa_judgements"] == [
        {"item": "11:ORG@news-alice", "verdict": "pass", "reason": None, "comment": ""},
        {"item": "12:ORG@news-bob", "verdict": "fail", "reason": "missed_span", "comment": "Initech"},
    ]

    figures = {
        "round": 2,
        "population": 40,
        "sampled": 2,
        "failed": 1,
        "error_rate": 0.5,
        "upper_bound": 0.9747,
        "max_error_rate": 0.1,
        "confidence": 0.95,
        "passed": False,
        "by_reason": {"missed_span": 1},
        "by_stratum": {"None|news-bob": {"sampled": 1, "failed": 1}},
    }
    sandbox.complete(record["id"], None, None, variables={"qa_result": "escalated", "qa_figures": figures})
    (lead_task,) = sandbox.tasks(processInstanceId=instance["id"])
    lead_page = _page(
        _signed_in(sandbox, "lead@example.com").get(
            f"{sandbox.inbox_url}/tasks/{lead_task['id']}", timeout=30
        )
    )
    shown = {
        row.xpath("td")[0].text_content(): row.xpath("td")[1].text_content()
        for row in lead_page.xpath('//table[@id="qa-figures"]/tbody/tr')
    }
    assert shown["Upper bound"] == "97.5% at 95.0% confidence" and shown["Failed: missed span"] == "1"
    failures = [
        [c.text_content() for c in row.xpath("td")]
        for row in lead_page.xpath('//table[@id="qa-failures"]/tbody/tr')
    ]
    assert failures == [["news-bob", "Nothing here", "missed span", "Initech"]], (
        "which answers failed and why"
    )
    assert not lead_page.xpath('//tr[@data-variable="qa_figures"]'), "figures in a table, not as JSON"
    assert "{" not in lead_page.get_element_by_id("form-fields").text_content()


def test_a_business_user_submits_an_annotation_request_from_the_inbox(sandbox: OpenTextSandbox):
    sandbox.set_user_groups("business@example.com", [])
    user = _signed_in(sandbox, "business@example.com")
    form = _page(user.get(f"{sandbox.inbox_url}/requests/new", timeout=30))
    assert [o.get("value") for o in form.xpath('//select[@id="task-type"]/option')] == [
        "ner",
        "textcat",
        "choice",
    ]
    missing = _post_request(user, sandbox, title="Brands in reviews")
    assert missing.status_code == 400
    assert "Fill in: Source, Labels, Annotators" in _page(missing).get_element_by_id("error").text
    title = f"Brands {os.getpid()}-{id(user)}"
    done = _post_request(
        user,
        sandbox,
        title=title,
        source="reviews.jsonl",
        **{"task-type": "ner", "labels": "BRAND, PRODUCT", "annotators": "alice@example.com,bob@example.com"},
        **{
            "annotations-per-task": "2",
            "priority": "high",
            "due-date": "2027-01-31",
            "instructions": "Mark brands.",
        },
    )
    assert done.status_code == 303, done.text
    (instance,) = [
        p
        for p in sandbox.request(
            "GET",
            "/historic-process-instances",
            params={"processDefinitionKey": "annotation_request_intake", "count": 200},
        ).json()["_embedded"]["historicProcessInstances"]
        if p.get("name") == f"Annotation request: {title}"
    ]
    assert (
        instance["startActivityId"] == "start_by_message"
        and instance["startUserId"] == "business@example.com"
    )
    values = {
        v["name"]: v["value"]
        for v in sandbox.request("GET", f"/process-instances/{instance['id']}/variables").json()
    }
    assert values["labels"] == ["BRAND", "PRODUCT"] and values["annotators"] == [
        "alice@example.com",
        "bob@example.com",
    ]
    assert (values["annotations_per_task"], values["priority"], values["due_date"]) == (
        2,
        "high",
        "2027-01-31",
    )
    (approval,) = sandbox.tasks(processInstanceId=instance["id"])
    assert approval["taskDefinitionKey"] == "request_approval", "the data owners decide on it next"


def _post_request(session, sandbox: OpenTextSandbox, **fields: str):
    return session.post(f"{sandbox.inbox_url}/requests/new", data=fields, allow_redirects=False, timeout=30)


def test_the_access_form_shows_the_held_case_and_submits_the_allowed_annotators(
    sandbox: OpenTextSandbox, business_key
):
    case = {
        "title": "Claims",
        "classification": "confidential",
        "annotators": ["alice@example.com", "bob@example.com"],
    }
    instance = sandbox.start_process("regulated_content_access", business_key, case)
    (hold,) = sandbox.tasks(processInstanceId=instance["id"])
    sandbox.complete(
        hold["id"], None, None, variables={"held": True, "tasks": 4, "content_sha256": "ab" * 32}
    )
    (task,) = sandbox.tasks(processInstanceId=instance["id"])
    officer = _signed_in(sandbox, "officer@example.com")
    page = _page(officer.get(f"{sandbox.inbox_url}/tasks/{task['id']}", timeout=30))
    rows = dict(
        (row.xpath("td")[0].text_content(), row.xpath("td")[1].text_content())
        for row in page.xpath('//table[@id="access-case"]/tbody/tr')
    )
    assert (rows["Classification"], rows["Tasks held"], rows["Content sha256"]) == (
        "confidential",
        "4",
        "ab" * 32,
    )
    assert [b.get("value") for b in page.xpath('//input[starts-with(@id, "allow-")]')] == case["annotators"]
    assert [b.get("id") for b in page.xpath('//form[@id="task-form"]//button[@class="outcome"]')] == [
        "outcome-granted",
        "outcome-denied",
    ]
    assert not page.xpath('//tr[@data-variable="annotators"]'), "shown by the form, not as JSON"

    nobody = _post(officer, sandbox, task["id"], outcome="granted")
    assert (
        nobody.status_code == 400
        and "tick or add at least one" in _page(nobody).get_element_by_id("error").text
    )
    granted = _post(
        officer, sandbox, task["id"], outcome="granted", **{"allow-2": "bob@example.com"},
        **{"other-annotators": "dora@example.com, bob@example.com"},
    )  # fmt: skip
    assert granted.status_code == 303
    values = {
        v["name"]: v["value"]
        for v in sandbox.request("GET", f"/process-instances/{instance['id']}/variables").json()
    }
    assert values["access_approval_outcome"] == "granted" and "allowed_annotators" not in values
    history = sandbox.request(
        "GET",
        "/historic-task-instances",
        params={"processInstanceId": instance["id"], "taskDefinitionKey": "access_approval",
                "includeTaskLocalVariables": "true"},
    ).json()["_embedded"]["historicTaskInstances"]  # fmt: skip
    (kept,) = [v for v in history[0]["variables"] if v["name"] == "allowed_annotators"]
    assert (kept["value"], kept["scope"]) == (["bob@example.com", "dora@example.com"], "local")
    closed = _page(officer.get(f"{sandbox.inbox_url}/tasks/{task['id']}", timeout=30))
    (granted_row,) = closed.xpath(f'//table[@id="history"]/tbody/tr[@data-task-id="{task["id"]}"]')
    assert "this-task" in granted_row.get("class")
    (grant,) = granted_row.find_class("task-variables")
    assert grant.xpath(".//th/text()") == ["allowed annotators"], (
        "what the grant allowed, kept in its history"
    )
    assert [li.text_content() for li in grant.xpath(".//li")] == ["bob@example.com", "dora@example.com"]


def test_a_request_uploads_its_source_as_an_attachment_reviewers_can_open(sandbox: OpenTextSandbox):
    sandbox.set_user_groups("business@example.com", [])
    user = _signed_in(sandbox, "business@example.com")
    fields = {
        "title": "Uploaded brands",
        "task-type": "ner",
        "labels": "BRAND",
        "annotators": "alice@example.com",
        "annotations-per-task": "1",
    }
    source = b'{"text": "Zara opens a store."}\n'
    submitted = user.post(
        f"{sandbox.inbox_url}/requests/new",
        data=fields,
        files={"source-file": ("brands.jsonl", source, "application/x-ndjson")},
        allow_redirects=False,
        timeout=30,
    )
    assert submitted.status_code == 303, submitted.text
    (task,) = [
        t
        for t in sandbox.tasks(
            processDefinitionKey="annotation_request_intake", includeProcessVariables="true"
        )
        if any(v["name"] == "title" and v["value"] == "Uploaded brands" for v in t["variables"])
    ]
    assert {v["name"]: v["value"] for v in task["variables"]}["source"] == "attachment:brands.jsonl"
    owner = _signed_in(sandbox, "owner@example.com")
    page = _page(owner.get(f"{sandbox.inbox_url}/tasks/{task['id']}", timeout=30))
    (row,) = page.xpath('//table[@id="attachments"]/tbody/tr')
    (link,) = row.find_class("attachment")
    assert link.text == "brands.jsonl" and link.get("target") is None
    assert (row.find_class("type")[0].text, row.find_class("size")[0].text) == (
        "application/x-ndjson",
        "32 bytes",
    )
    download = owner.get(sandbox.url + link.get("href"), timeout=30)
    assert download.content == source
    assert download.headers["content-disposition"] == "attachment; filename*=UTF-8''brands.jsonl"
    assert download.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in download.headers


REPORT = (
    "<!DOCTYPE html><html><head><style>h1 { color: #123; }</style></head><body><h1>Review report</h1>"
    '<figure id="answers-per-label"><svg xmlns="http://www.w3.org/2000/svg"><rect class="bar"/></svg>'
    "</figure><script>document.title = 'ran'</script></body></html>"
)


def test_an_html_attachment_opens_in_the_browser_under_a_policy_that_lets_it_run_nothing(
    sandbox: OpenTextSandbox, business_key
):
    instance = sandbox.start_process("dataset_release_signoff", business_key)
    added = sandbox.request(
        "POST",
        f"/process-instances/{instance['id']}/attachments",
        files={"file": ("review_report.html", REPORT.encode(), "text/html")},
    )
    assert added.status_code == 201, added.text
    (task,) = sandbox.tasks(processInstanceId=instance["id"])
    manager = _signed_in(sandbox, "rm@example.com")
    page = _page(manager.get(f"{sandbox.inbox_url}/tasks/{task['id']}", timeout=30))
    (link,) = page.xpath('//table[@id="attachments"]//a[@class="attachment"]')
    assert (link.text, link.get("target")) == ("review_report.html", "_blank")
    opened = manager.get(sandbox.url + link.get("href"), timeout=30)
    assert opened.status_code == 200 and opened.text == REPORT
    assert opened.headers["content-type"] == "text/html; charset=utf-8"
    assert opened.headers["content-disposition"] == "inline; filename*=UTF-8''review_report.html"
    assert opened.headers["content-security-policy"] == (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; sandbox"
    )
    assert opened.headers["x-content-type-options"] == "nosniff"
    missing = manager.get(f"{sandbox.inbox_url}/attachments/{instance['id']}/no-such-file", timeout=30)
    assert missing.status_code == 404 and "no-such-file" in _page(missing).get_element_by_id("error").text
    anonymous = requests.get(sandbox.url + link.get("href"), allow_redirects=False, timeout=30)
    assert anonymous.status_code == 303


ESCAPED_JSON = re.compile(r"""[{\[]\s*["']|&quot;|&#x27;""")
"""What JSON (or a Python repr) looks like when it is printed on a page instead of shown as a table."""


def test_structured_variables_read_as_tables_and_lists_on_every_inbox_page(
    sandbox: OpenTextSandbox, business_key
):
    variables = {
        "model": "ner-news",
        "examples": [{"text": "Acme buys Initech", "label": "ORG"}, {"text": "Zara opens", "label": "BRAND"}],
        "labels": ["ORG", "BRAND"],
        "progress": {"percent": 40, "by_annotator": {"alice@example.com": 12, "bob@example.com": 4}},
        "policy_reference": '{"policy": "AI-7", "sections": ["3.1", "4"]}',
        "urgent": False,
    }
    instance = sandbox.start_process("model_improvement_request", business_key, variables)
    (task,) = sandbox.tasks(processInstanceId=instance["id"])
    ml = _signed_in(sandbox, "ml@example.com")
    task_page = ml.get(f"{sandbox.inbox_url}/tasks/{task['id']}", timeout=30)
    page = _page(task_page)

    def value(name: str) -> html.HtmlElement:
        (cell,) = page.xpath(f'//table[@id="variables"]//tr[@data-variable="{name}"]/td[@class="value"]')
        return cell

    assert [[c.text_content() for c in r.xpath("td")] for r in value("examples").xpath(".//tbody/tr")] == [
        ["Acme buys Initech", "ORG"],
        ["Zara opens", "BRAND"],
    ]
    assert [h.text for h in value("examples").xpath(".//thead/tr/th")] == ["text", "label"]
    assert [li.text_content() for li in value("labels").xpath("./ul/li")] == ["ORG", "BRAND"]
    progress = value("progress")
    assert progress.xpath("./table/tbody/tr/th/text()") == ["percent", "by annotator"]
    assert progress.xpath(".//table//table/tbody/tr/th/text()") == ["alice@example.com", "bob@example.com"]
    held = value("policy_reference")
    assert held.xpath("./table/tbody/tr/th/text()") == ["policy", "sections"], "JSON text reads as its value"
    assert value("urgent").text_content() == "no"
    sandbox.complete(task["id"], "approved", "ml@example.com", comment="Worth it.")

    pages = {
        "task": task_page,
        "history": ml.get(f"{sandbox.inbox_url}/processes/{instance['id']}", timeout=30),
        "closed task": ml.get(f"{sandbox.inbox_url}/tasks/{task['id']}", timeout=30),
        "list": ml.get(sandbox.inbox_url, timeout=30),
        "request form": ml.get(f"{sandbox.inbox_url}/requests/new", timeout=30),
    }
    for name, response in pages.items():
        assert response.status_code == 200, name
        text = _page(response).text_content()
        assert not ESCAPED_JSON.search(text), f"the {name} page prints JSON: {ESCAPED_JSON.search(text)}"
    history = _page(pages["history"])
    assert history.xpath('//tr[@data-variable="examples"]//table[@class="records"]'), "shown there as a table"
