"""
### Annotation batch approval (flow 1: Prodigy → OpenText → Prodigy)

Every finished annotation batch is approved by business reviewers in OpenText Workflow Service before
anything downstream may use it. One run reviews one batch, so every batch waits for its reviewers on its
own: for each dataset marked ready, `annotation_ready_batches` starts its `label_escalation` run, which
settles the items the annotators did not and then starts this run; a person can start one from the
trigger form.

1. **choose_start** / **wait_for_batch**: with `min_answers` / `annotators_per_input`, the run first
   waits (deferred) until the annotators are done.
2. **find_batch**: the dataset up to the `version` given (`b<last example id>`), else up to its last
   example now; with no dataset, the next dataset marked ready for review (as `annotation_ready_batches`
   finds them; the run skips when none is). A name that cannot be a folder, or a version the dataset does
   not hold, fails at once.
3. **prepare_package**: streams the batch to `data/review/<dataset>/<version>/answers.jsonl` and writes
   the review report reviewers open from their task (`review_report.html`: counts by answer, label and
   annotator with charts, agreement overall, per label and per annotator pair, sample items with their
   spans, disputes and how they were decided, QA rounds).
4. **supersede_older_reviews**: the dataset's open reviews of older versions are withdrawn in OpenText
   with a comment naming the version that replaces them.
5. **request_approval**: one `annotation_batch_approval` process per (dataset, version), found again by its
   businessKey on reruns, one even when runs race, with the package's sha256 so a release can prove
   reviewers approved exactly its data, and the review report attached. Regulated datasets get a
   compliance review after the SME.
   **deploy_process_models** first deploys the models of `include/bpmn` that changed (none, usually).
6. **wait_for_decision**: deferred; no worker slot is held while reviewers decide.
7. **record_decision**: the sign-off (who, when, decision, comments) goes into the dataset's meta and the
   append-only audit log `data/audit/governance.jsonl`; a rejection marks the batch for rework with the
   reviewers' comments; the decision on a superseded version changes nothing but the audit log.
8. **start_release**: an approved batch starts a `dataset_release` run (which re-checks the approval in
   OpenText itself).

Steps: `prodigy_opentext.flows.batch_approval`; process model:
`include/bpmn/annotation_batch_approval.bpmn20.xml`; tests: `tests/flows/test_batch_approval.py`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from _governance_deployment import DEFAULT_ARGS, OPENTEXT_POLL_SECONDS, audit_log, data_dir
from airflow.sdk import Param, dag, task

from prodigy_opentext.core.approvals import BATCH_APPROVAL_PROCESS
from prodigy_opentext.core.paths import PLAIN_NAME
from prodigy_opentext.core.payloads import (
    BatchToReview,
    JudgedDecision,
    ProcessRequest,
    RecordedDecision,
    ReviewPackage,
    RunRequest,
)
from prodigy_opentext.flows.batch_approval import (
    batch_to_work_on,
    prepare_review_package,
    record_review_decision,
    release_run,
    supersede_older_reviews,
    waits_for_annotators,
)
from prodigy_opentext.operators.dag_run import TriggerDagRunOnceOperator
from prodigy_opentext.operators.opentext import OpenTextDeployModelsOperator, OpenTextStartProcessOperator
from prodigy_opentext.sensors.opentext import OpenTextApprovalSensor
from prodigy_opentext.sensors.prodigy import ProdigyBatchSensor


@dag(
    dag_id="annotation_batch_approval",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # Each run waits for one batch's reviewers (up to 72 h): many wait side by side.
    max_active_runs=64,
    default_args=DEFAULT_ARGS,
    tags=["prodigy", "opentext", "approval"],
    doc_md=__doc__,
    params={
        "dataset": Param(
            None,
            type=["null", "string"],
            pattern=PLAIN_NAME.pattern,
            title="Dataset",
            description=(
                "The Prodigy dataset whose batch to approve: letters, digits, '.', '_' and '-', starting "
                "with a letter or digit. Empty: the next dataset marked ready for review (meta "
                '{"review": {"status": "ready"}}), as annotation_ready_batches finds them; none ready, '
                "the run skips."
            ),
        ),
        "version": Param(
            None,
            type=["null", "string"],
            pattern=r"^b[0-9]+$",
            title="Version",
            description="b<last example id>, with a dataset. Empty: the dataset as it is now.",
        ),
        "min_answers": Param(
            0,
            type="integer",
            minimum=0,
            title="Wait for answers",
            description="With a dataset: wait until it holds this many answers first (0: no wait).",
        ),
        "annotators_per_input": Param(
            0,
            type="integer",
            minimum=0,
            title="Wait for annotators per input",
            description="With a dataset: wait until every input has this many annotators first (0: no wait).",
        ),
    },
    render_template_as_native_obj=True,
)
def annotation_batch_approval():
    @task.branch
    def choose_start(params: dict) -> str:
        waits = waits_for_annotators(params["dataset"], params["min_answers"], params["annotators_per_input"])
        return "wait_for_batch" if waits else "find_batch"

    wait_for_batch = ProdigyBatchSensor(
        task_id="wait_for_batch",
        dataset="{{ params.dataset | tojson }}",  # a name like "2024" stays a string under native rendering
        min_answers="{{ params.min_answers or None }}",
        annotators_per_input="{{ params.annotators_per_input or None }}",
        poke_interval=10,
        timeout=timedelta(days=7).total_seconds(),
    )

    @task(trigger_rule="none_failed_min_one_success")
    def find_batch(params: dict) -> BatchToReview:
        return batch_to_work_on(params["dataset"], params["version"])

    @task
    def prepare_package(batch: BatchToReview) -> ReviewPackage:
        return prepare_review_package(batch, data_dir() / "review", audit_log())

    @task
    def withdraw_older_reviews(package: ReviewPackage) -> list[str]:
        return supersede_older_reviews(package)

    batch = find_batch()
    package = prepare_package(batch)
    deploy_models = OpenTextDeployModelsOperator(task_id="deploy_process_models")

    @task
    def approval_request(package: ReviewPackage) -> ProcessRequest:
        return package["process"]

    process = approval_request(package)
    requested = OpenTextStartProcessOperator(
        task_id="request_approval",
        process_definition_key=BATCH_APPROVAL_PROCESS,
        business_key=process["business_key"],
        process_name=process["process_name"],
        variables=process["variables"],
        attachments=process["attachments"],
    )
    decision = OpenTextApprovalSensor(
        task_id="wait_for_decision",
        process_instance_id=requested.output,
        on_rejection="continue",
        poke_interval=OPENTEXT_POLL_SECONDS,
        response_timeout=timedelta(hours=72),
    )

    @task
    def record_decision(package: ReviewPackage, decision: JudgedDecision) -> RecordedDecision:
        return record_review_decision(package, decision, audit_log())

    recorded = record_decision(package, decision.output)

    @task
    def release_request(recorded: RecordedDecision) -> RunRequest:
        return release_run(recorded)

    run = release_request(recorded)
    TriggerDagRunOnceOperator(
        task_id="start_release",
        run=run,
    )

    choose_start() >> [wait_for_batch, batch]
    wait_for_batch >> batch
    [deploy_models, withdraw_older_reviews(package)] >> requested


annotation_batch_approval()
