"""The regulated story (flow 5): warranty claims that mention customers wait for their access approval.

Compliance opens a ``regulated_content_access`` case for a file of warranty claims in Airflow's holding
area; ``regulated_content_access`` (every 10 minutes and on every release, triggered here) checks it there
and posts its size and sha256 on the case, while Prodigy's database holds none of it. A compliance
officer grants access to alice only; the next run masks the claims' e-mail addresses and phone numbers and
loads them as a regulated dataset served to alice's session alone (bob is refused); alice annotates; the
next run posts the progress and sends the batch to review, whose approval (SME, then compliance) then
waits in the inbox; the case closes with the metadata of the release that will hold it. Journal result:
``regulated``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import requests

from scripts.launchers import Annotators
from scripts.processes import StackError
from scripts.stories._story import Journal, World, annotate_stream, finish

REGULATED_DAG = "regulated_content_access"
REGULATED_PROCESS = "regulated_content_access"
REQUESTER = "business.user@example.com"
OFFICER = "compliance.officer@example.com"
DATASET = "warranty_claims"
CLAIMS = [
    "Customer wants a refund for the Zara coat, reach her at anna.berg@example.net.",
    "The Nike shoes split after a week; call the customer on +46 70 123 45 67.",
    "Levi's jeans faded after one wash, the customer says.",
    "Adidas jacket zipper broke; customer asks for a call back on (555) 201-3344.",
]


class RegulatedStory:
    dag_ids: ClassVar[tuple[str, ...]] = (REGULATED_DAG,)
    results: ClassVar[tuple[str, ...]] = ("regulated",)

    def play(self, world: World, journal: Journal) -> None:
        holding = world.data_dir / "regulated" / "holding"
        holding.mkdir(parents=True, exist_ok=True)
        (holding / f"{DATASET}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in CLAIMS))
        variables = {
            "title": "Brands in warranty claims",
            "dataset": DATASET,
            "content_source": f"{DATASET}.jsonl",
            "classification": "customer-personal-data",
            "task_type": "ner",
            "labels": ["BRAND"],
            "instructions": "Mark every brand name as BRAND.",
            "annotators": ["alice@example.com", "bob@example.com"],
            "annotations_per_task": 1,
        }
        case = world.reviewer.hook(REQUESTER).start_process(
            REGULATED_PROCESS, f"regulated:{DATASET}", variables, "Brands in warranty claims"
        )
        finish(world, world.api.trigger(REGULATED_DAG), journal)
        task = world.reviewer.wait_for_task(
            REGULATED_PROCESS, {"dataset": DATASET}, world.timeout, world.stack
        )
        values = {v["name"]: v.get("value") for v in task.get("variables") or []}
        if world.prodigy.dataset_meta(DATASET) is not None:
            raise StackError(f"{DATASET} is in Prodigy before its access approval")
        world.step(
            f"A regulated case waits for its access approval: {values['tasks']} claims held outside Prodigy "
            f"(sha256 {str(values['content_sha256'])[:12]}…); Prodigy has no dataset {DATASET}",
            world.reviewer.task_url(task),
        )
        world.reviewer.decide(
            task, OFFICER, "granted", "Granted to alice only: she completed the data protection training.",
            task_variables={"allowed_annotators": ["alice@example.com"]},
        )  # fmt: skip

        load = world.api.trigger(REGULATED_DAG)
        finish(world, load, journal)
        meta = world.prodigy.dataset_meta(DATASET)
        if meta is None:
            raise StackError(f"{REGULATED_DAG} loaded no dataset {DATASET}: see its run")
        served = [json.loads(line)["text"] for line in Path(meta["stream"]).read_text().splitlines()]
        world.step(
            f"{REGULATED_DAG} loaded {meta['tasks']} claims for {', '.join(meta['sessions'])} only, "
            f"{meta['redaction']['tasks_masked']} masked: “{served[0]}”",
            world.run_url(load),
        )
        url, summary = annotate_stream(world, DATASET, meta, Annotators(("alice",), disagree=0.0))
        refused = requests.post(
            f"{url}/get_session_questions", json={"session_id": f"{DATASET}-bob"}, timeout=30
        )
        world.step(
            f"alice annotated them ({summary}); bob's session is refused (HTTP {refused.status_code})", url
        )

        progress = world.api.trigger(REGULATED_DAG)
        finish(world, progress, journal)
        (case_now,) = world.reviewer.hook().historic_processes(
            processInstanceId=case["id"], includeProcessVariables="true"
        )
        after = {v["name"]: v.get("value") for v in case_now.get("variables") or []}
        approval = world.reviewer.wait_for_task(
            "annotation_batch_approval", {"dataset": DATASET, "regulated": True}, world.timeout, world.stack
        )
        journal.results["regulated"] = {
            "process_instance_id": case["id"],
            "dataset": DATASET,
            "held_tasks": values["tasks"],
            "content_sha256": values["content_sha256"],
            "sessions": meta["sessions"],
            "tasks_masked": meta["redaction"]["tasks_masked"],
            "stranger_status": refused.status_code,
            "review_run": after.get("review_run"),
            "approval_task": world.reviewer.task_url(approval),
        }
        world.step(
            f"The case's batch went to review ({after.get('review_run')}): its regulated approval (SME, then "
            "compliance) waits in the inbox; the release that holds it will close the case with its metadata",
            world.reviewer.task_url(approval),
        )
