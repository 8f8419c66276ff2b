"""The intake story (flow 4): a business user's annotation request becomes a dataset the team works on.

A business user signs in to the OpenText inbox and submits a request from its "New annotation request"
form (a file of brand mentions in the intake folder, labels, instructions, the team); a data owner approves
it there; ``annotation_request_intake`` (every 10 minutes, triggered here) provisions the dataset and its
task stream; the story serves the stream to the team's sessions only and alice and bob annotate it; the next
intake run posts the progress on the request, finds the target reached, sends the batch to review and closes
the request. That batch's review then waits in the inbox like any other. Journal result: ``request``.
"""

from __future__ import annotations

import json
from typing import ClassVar

import requests

from scripts.launchers import DEMO_TASKS, REVIEWER_PASSWORD, Annotators
from scripts.processes import StackError
from scripts.stories._story import Journal, World, annotate_stream, finish, wait_for_end

INTAKE_DAG = "annotation_request_intake"
INTAKE_PROCESS = "annotation_request_intake"
REQUESTER = "business.user@example.com"
DATA_OWNER = "data.owner@example.com"
REQUEST_DATASET = "brand_mentions"
TEAM = ("alice", "bob")


def submit_in_inbox(inbox_url: str, fields: dict[str, str]) -> None:
    """Sign in as the business user and submit the request form, as a person does in the browser."""
    with requests.Session() as browser:
        signed_in = browser.post(
            f"{inbox_url}/login", data={"email": REQUESTER, "password": REVIEWER_PASSWORD}, timeout=30
        )
        submitted = browser.post(f"{inbox_url}/requests/new", data=fields, timeout=30)
    if signed_in.status_code != 200 or submitted.status_code != 200 or "submitted" not in submitted.text:
        raise StackError(
            f"the inbox did not take the request: {submitted.status_code} {submitted.text[-300:]}"
        )


class IntakeStory:
    dag_ids: ClassVar[tuple[str, ...]] = (INTAKE_DAG,)
    results: ClassVar[tuple[str, ...]] = ("request",)

    def play(self, world: World, journal: Journal) -> None:
        source = world.data_dir / "intake" / f"{REQUEST_DATASET}.jsonl"
        source.parent.mkdir(parents=True, exist_ok=True)
        lines = DEMO_TASKS.read_text().splitlines()[-8:]
        source.write_text("".join(json.dumps({"text": json.loads(line)["text"]}) + "\n" for line in lines))
        title = "Brand mentions in customer reviews"
        submit_in_inbox(
            world.reviewer.client.inbox_url,
            {
                "title": title,
                "source": source.name,
                "task-type": "ner",
                "labels": "BRAND",
                "instructions": "Mark every brand name as BRAND.",
                "priority": "high",
                "due-date": "2027-01-31",
                "approvers": DATA_OWNER,
                "annotators": ", ".join(f"{name}@example.com" for name in TEAM),
                "annotations-per-task": "2",
                "dataset": REQUEST_DATASET,
            },
        )
        task = world.reviewer.wait_for_task(INTAKE_PROCESS, {"title": title}, world.timeout, world.stack)
        world.step(
            f"{REQUESTER} submitted '{title}' in the inbox's request form", world.reviewer.task_url(task)
        )
        world.reviewer.decide(task, DATA_OWNER, "approved", "Approved: the reviews team needs these labels.")

        provision = world.api.trigger(INTAKE_DAG)
        finish(world, provision, journal)
        meta = world.prodigy.dataset_meta(REQUEST_DATASET)
        if meta is None:
            raise StackError(f"{INTAKE_DAG} created no dataset {REQUEST_DATASET}: see its run")
        world.step(
            f"{INTAKE_DAG} provisioned Prodigy dataset {REQUEST_DATASET}: {meta['tasks']} tasks for "
            f"{', '.join(meta['sessions'])}",
            world.run_url(provision),
        )
        url, summary = annotate_stream(world, REQUEST_DATASET, meta, Annotators(TEAM, disagree=0.0))
        world.step(f"The team annotated it: {summary}", url)

        progress = world.api.trigger(INTAKE_DAG)
        finish(world, progress, journal)
        closed = wait_for_end(world, task["processInstanceId"], "end_annotated", "the request to close")
        journal.results["request"] = {
            "title": title,
            "dataset": REQUEST_DATASET,
            "process_instance_id": task["processInstanceId"],
            "progress": closed["progress"],
            "review_run": closed["review_run"],
        }
        world.step(
            f"The request closed at {closed['progress']['answers']} answers: batch {closed['batch_version']} "
            f"went to review ({closed['review_run']}), whose approval then waits in the inbox",
            world.run_url(progress),
        )
