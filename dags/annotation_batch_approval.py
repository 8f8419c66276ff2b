"""
### Annotation batch approval (flow 1: Prodigy → OpenText → Prodigy)

Every finished annotation batch is approved by business reviewers in OpenText Workflow Service before
anything downstream may use it.

1. **find_batches**: the Prodigy datasets whose meta says `{"review": {"status": "ready"}}` (or
   `"requested"`: a review whose wait failed resumes with the same OpenText process), or the one
   named in the `dataset` param (optionally after `wait_for_batch` saw enough answers). A batch is a
   dataset up to its last example id; its version is `b<last example id>`.
2. **prepare_review_package**: streams the batch to `data/review/<dataset>/<version>/answers.jsonl` and
   computes the statistics reviewers see: counts by answer, label and annotator, inter-annotator agreement
   (Cohen's kappa / Krippendorff's alpha where inputs overlap) and open disputes.
3. **request_approval**: one `annotation_batch_approval` process per (dataset, version), found again by its
   businessKey on reruns, never started twice, with the package's sha256 so a release can prove reviewers
   approved exactly its data. Regulated datasets get a compliance review after the SME.
   **deploy_process_models** first deploys the models of `include/bpmn` that changed (none, usually).
4. **wait_for_decision**: deferred; no worker slot is held while reviewers decide.
5. **record_decision**: the sign-off (who, when, decision, comments) goes into the dataset's meta and the
   append-only audit log `data/audit/governance.jsonl`; a rejection marks the batch for rework with the
   reviewers' comments.
6. **start_release**: approved batches start a `dataset_release` run (which re-checks the approval in
   OpenText itself).

Run it for one dataset from the trigger form (`dataset`, and `min_answers` / `annotators_per_input` to
wait for the annotators first).

Steps: `prodigy_opentext.flows.batch_approval`; process model:
`include/bpmn/annotation_batch_approval.bpmn20.xml`; tests: `tests/flows/test_batch_approval.py`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from _governance_deployment import DEFAULT_ARGS, OPENTEXT_POLL_SECONDS, audit_log, data_dir
from airflow.sdk import Param, dag, task

from prodigy_opentext.core.approvals import BATCH_APPROVAL_PROCESS
from prodigy_opentext.core.payloads import BatchToReview, JudgedDecision, RecordedDecision, ReviewPackage
from prodigy_opentext.flows.batch_approval import (
    find_ready_batches,
    prepare_review_package,
    record_review_decision,
    release_run,
)
from prodigy_opentext.operators.dag_run import TriggerDagRunOnceOperator
from prodigy_opentext.operators.opentext import OpenTextDeployModelsOperator, OpenTextStartProcessOperator
from prodigy_opentext.sensors.opentext import OpenTextApprovalSensor
from prodigy_opentext.sensors.prodigy import ProdigyBatchSensor


@dag(
    dag_id="annotation_batch_approval",
    schedule="*/30 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # One run at a time: a second run must not re-request a batch whose decision is being recorded.
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["prodigy", "opentext", "approval"],
    doc_md=__doc__,
    params={
        "dataset": Param(
            "",
            type="string",
            pattern=r"^[^,\s]*$",
            title="Dataset",
            description="Only this Prodigy dataset (empty: every dataset marked ready for review).",
        ),
        "min_answers": Param(
            0, type="integer", minimum=0, description="With a dataset: wait until it holds this many answers."
        ),
        "annotators_per_input": Param(
            0,
            type="integer",
            minimum=0,
            description="With a dataset: wait until every input has this many distinct annotators.",
        ),
    },
    render_template_as_native_obj=True,
)
def annotation_batch_approval():
    @task.branch
    def choose_start(params: dict) -> str:
        wait = params["dataset"] and (params["min_answers"] or params["annotators_per_input"])
        return "wait_for_batch" if wait else "find_batches"

    wait_for_batch = ProdigyBatchSensor(
        task_id="wait_for_batch",
        dataset="{{ params.dataset | tojson }}",  # a name like "2024" stays a string under native rendering
        min_answers="{{ params.min_answers or None }}",
        annotators_per_input="{{ params.annotators_per_input or None }}",
        poke_interval=10,
        timeout=timedelta(days=7).total_seconds(),
    )

    @task(trigger_rule="none_failed_min_one_success")
    def find_batches(params: dict) -> list[BatchToReview]:
        return find_ready_batches(only=params["dataset"] or None)

    @task
    def prepare_package(batch: BatchToReview) -> ReviewPackage:
        return prepare_review_package(batch, data_dir() / "review")

    batches = find_batches()
    packages = prepare_package.expand(batch=batches)

    deploy_models = OpenTextDeployModelsOperator(task_id="deploy_process_models")

    requested = OpenTextStartProcessOperator.partial(
        task_id="request_approval", process_definition_key=BATCH_APPROVAL_PROCESS
    ).expand_kwargs(packages.map(lambda package: package["process"]))

    decisions = OpenTextApprovalSensor.partial(
        task_id="wait_for_decision",
        on_rejection="continue",
        poke_interval=OPENTEXT_POLL_SECONDS,
        response_timeout=timedelta(hours=72),
    ).expand(process_instance_id=requested.output)

    @task
    def record_decision(package_and_decision: tuple[ReviewPackage, JudgedDecision]) -> RecordedDecision:
        package, decision = package_and_decision
        return record_review_decision(package, decision, audit_log())

    recorded = record_decision.expand(package_and_decision=packages.zip(decisions.output))

    TriggerDagRunOnceOperator.partial(
        task_id="start_release", trigger_dag_id="dataset_release"
    ).expand_kwargs(recorded.map(release_run))

    deploy_models >> requested
    choose_start() >> [wait_for_batch, batches]
    wait_for_batch >> batches


annotation_batch_approval()
