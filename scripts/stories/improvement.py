"""The improvement story (flow 8): a model improvement request, closed by the release that answers it.

Customer service reports in OpenText that the brand model misses sportswear brands, with the inputs it got
wrong; an ML lead approves; ``model_improvement_requests`` (every 10 minutes and on every release, triggered
here) adds the examples as tasks of a new dataset tagged with the request; alice and bob annotate them; the
next run sends the batch to review, which goes as any batch's does (an SME approves it, the release manager
signs the release off); the release's asset event runs the DAG again, which completes the request with the
release version and its manifest's sha256. Journal result: ``improvement``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from scripts.launchers import Annotators
from scripts.processes import StackError
from scripts.stories._story import Journal, World, annotate_stream, finish, wait_for_end
from scripts.stories.batch_approval import BatchApprovalStory
from scripts.stories.release import ReleaseStory

IMPROVEMENT_DAG = "model_improvement_requests"
IMPROVEMENT_PROCESS = "model_improvement_request"
REQUESTER = "business.user@example.com"
ML_LEAD = "ml.lead@example.com"
DATASET = "brand_improvements"
TEAM = ("alice", "bob")
BRANDS = {
    "Lululemon leggings sold out again this week.": "Lululemon",
    "My Patagonia jacket survived the whole winter.": "Patagonia",
    "I returned the Asics running shoes.": "Asics",
    "Arc'teryx opened a store downtown.": "Arc'teryx",
}
EXAMPLES = list(BRANDS)


def brands_marked(stream: Path, reference: Path) -> Path:
    """The served tasks with their brand marked: what alice and bob, reading the request, annotate."""
    tasks = [json.loads(line) for line in stream.read_text().splitlines() if line.strip()]
    for task in tasks:
        start = task["text"].index(BRANDS[task["text"]])
        end = start + len(BRANDS[task["text"]])
        covered = [t["id"] for t in task["tokens"] if t["start"] >= start and t["end"] <= end]
        span = {"start": start, "end": end, "label": "BRAND"}
        task["spans"] = [{**span, "token_start": covered[0], "token_end": covered[-1]}]
    reference.write_text("".join(json.dumps(task) + "\n" for task in tasks))
    return reference


class ImprovementStory:
    dag_ids: ClassVar[tuple[str, ...]] = (IMPROVEMENT_DAG,)
    results: ClassVar[tuple[str, ...]] = ("improvement",)

    def play(self, world: World, journal: Journal) -> None:
        variables = {
            "model": "brand-ner",
            "problem": "misses sportswear brands",
            "policy_reference": "CS-2026-114",
            "examples": EXAMPLES,
            "dataset": DATASET,
            "labels": ["BRAND"],
            "task_type": "ner",
            "annotators": [f"{name}@example.com" for name in TEAM],
            "annotations_per_task": 2,
        }
        instance = world.reviewer.hook(REQUESTER).start_process(
            IMPROVEMENT_PROCESS, f"improvement:{DATASET}", variables, "Improve brand-ner: sportswear brands"
        )
        task = world.reviewer.wait_for_task(
            IMPROVEMENT_PROCESS, {"dataset": DATASET}, world.timeout, world.stack
        )
        world.step(
            f"{REQUESTER} asked to improve brand-ner ({len(EXAMPLES)} inputs it gets wrong)",
            world.reviewer.task_url(task),
        )
        world.reviewer.decide(
            task, ML_LEAD, "approved", "Approved: sportswear is a growing share of reviews."
        )
        finish(world, world.api.trigger(IMPROVEMENT_DAG), journal)
        meta = world.prodigy.dataset_meta(DATASET)
        if meta is None:
            raise StackError(f"{IMPROVEMENT_DAG} created no dataset {DATASET}: see its run")
        marked = brands_marked(Path(meta["stream"]), world.data_dir / f"{DATASET}-reference.jsonl")
        url, summary = annotate_stream(world, DATASET, meta, Annotators(TEAM, disagree=0.0, reference=marked))
        world.step(f"The examples are tasks of {DATASET}; the team annotated them: {summary}", url)
        finish(world, world.api.trigger(IMPROVEMENT_DAG), journal)

        reviewed = replace(world, dataset=DATASET)
        side = Journal()  # its approvals and release, apart from the main story's results
        BatchApprovalStory().play(reviewed, side)
        ReleaseStory().play(reviewed, side)
        closed = wait_for_end(world, instance["id"], "end_delivered", "the improvement request to close")
        journal.results["improvement"] = {
            "process_instance_id": instance["id"],
            "dataset": DATASET,
            "release_version": closed["release_version"],
            "manifest_sha256": closed["manifest_sha256"],
            "approvals": side.approvals,
        }
        world.step(
            f"The release's event closed the improvement request: release {closed['release_version']}, "
            f"manifest sha256 {closed['manifest_sha256'][:12]}…",
            world.reviewer.task_url(task),
        )
