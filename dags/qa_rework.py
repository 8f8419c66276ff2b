"""
### QA and rework (flow 6: Prodigy → OpenText → Prodigy)

One run per QA round of a dataset version (`qa__<dataset>__<version>__r<round>`): a QA reviewer judges
a sample of the annotators' answers in OpenText; a failed round sends its failed answers back to their
annotators in Prodigy and starts the next round once they are redone; after `max_rounds` failed rounds
the annotation leads decide. `label_escalation` starts round 1 for a settled batch whose dataset's meta
asks for QA (`qa_review`: these params, `{}` for the defaults); a person can start one from the form.

1. **find_batch**: the dataset up to the `version` given (`b<last example id>`), else up to now.
2. **draw_sample**: a seeded, stratified sample (by label and annotator) of each annotator's current
   answer to each item (corrections from earlier rounds in, ignores out): `sample_size` answers, a
   `sample_fraction`, or by default the smallest sample that can pass (29 answers for 10 % at 95 %).
   A session the dataset's meta (`annotator_emails`) does not name fails here.
3. **open_round**: one `qa_review` process per round (businessKey `qa_review:<dataset>:<version>:r<round>`,
   found again on reruns) with the sample and the rule.
4. **record_round**: deferred (no worker slot held) until the QA reviewer has judged each answer (pass,
   or fail with a reason and a comment) and the process waits at `record_qa`, Airflow's own step. The
   batch passes when the error rate's upper confidence bound (Clopper-Pearson, `confidence`) is within
   `max_error_rate`. The figures go on the process (`qa_figures`, a comment) and in the audit log.
   Judgements that do not fit the sample, or a reviewer who annotated the batch, send it back with
   `review_problems`.
5. **what_follows**, read from the process (so reruns see what was recorded):
   - passed → **start_batch_approval** (with `request_approval`);
   - rework → **create_rework**: dataset `<dataset>_rework_<version>_r<round>` and its task stream (its meta
     names it), the failed answers (with `rework_scope` `stratum`, every answer of each annotator/label
     pair with a failure), each task's meta carrying the `instructions` and the reviewer's reason and
     comment, served to the session that gave it (`meta.annotator`); **wait_for_rework** (deferred) until
     every task is answered; **start_next_round** starts round r+1 with the same settings: the corrections
     replace the answers they redo (provenance in their meta and `_session_id`);
   - escalated (round `max_rounds` failed) → **leads_decide**: the annotation leads accept the batch or
     reject it in OpenText (`record_lead`, Airflow's step, refuses a lead who annotated the batch);
     accepted → start_batch_approval, rejected → nothing further.

Steps: `prodigy_opentext.flows.qa`; process model: `include/bpmn/qa_review.bpmn20.xml`;
tests: `tests/flows/test_qa.py`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from _governance_deployment import BATCH_PARAMS, DEFAULT_ARGS, OPENTEXT_POLL_SECONDS, audit_log, data_dir
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import Param, dag, task

from prodigy_opentext.core.payloads import (
    BatchToReview,
    ProcessRequest,
    QAOutcome,
    QARound,
    ReworkBatch,
    RunRequest,
)
from prodigy_opentext.core.qa import (
    CHECK_STEP,
    ENDS,
    ESCALATED,
    LEAD_ENDS,
    LEAD_REVIEW,
    PASSED,
    QA_PROCESS,
    REASONS,
    REJECTED,
    REWORK,
    SCOPES,
)
from prodigy_opentext.flows.batch_approval import batch_to_work_on
from prodigy_opentext.flows.qa import (
    LEAD_STEP,
    approval_after_qa,
    create_rework,
    draw_sample,
    next_round,
    qa_request,
    record_lead_decision,
    record_round,
    round_outcome,
)
from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook
from prodigy_opentext.operators.dag_run import TriggerDagRunOnceOperator
from prodigy_opentext.operators.opentext import (
    OpenTextDeployModelsOperator,
    OpenTextServiceTaskOperator,
    OpenTextStartProcessOperator,
)
from prodigy_opentext.sensors.prodigy import ProdigyBatchSensor


@dag(
    dag_id="qa_rework",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=16,
    default_args=DEFAULT_ARGS,
    tags=["prodigy", "opentext", "qa"],
    doc_md=__doc__,
    params={
        **BATCH_PARAMS,
        "round": Param(1, type="integer", minimum=1, title="QA round"),
        "max_rounds": Param(
            3,
            type="integer",
            minimum=1,
            maximum=10,
            title="Rounds before the leads decide",
            description="After this many failed rounds the annotation leads accept or reject the batch.",
        ),
        "max_error_rate": Param(
            0.1,
            type="number",
            exclusiveMinimum=0,
            exclusiveMaximum=1,
            title="Largest error rate allowed",
            description="The batch passes when the error rate's upper confidence bound is within it.",
        ),
        "confidence": Param(0.95, type="number", exclusiveMinimum=0, exclusiveMaximum=1, title="Confidence"),
        "sample_size": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Sample size",
            description="Answers to sample; empty: sample_fraction, else the smallest sample that can pass.",
        ),
        "sample_fraction": Param(
            None,
            type=["null", "number"],
            exclusiveMinimum=0,
            maximum=1,
            title="Sample fraction",
            description="Share of the answers to sample, when no sample_size is given.",
        ),
        "rework_scope": Param(
            "failed",
            enum=list(SCOPES),
            title="What goes to rework",
            description="failed: the failed answers; stratum: every answer of each annotator/label pair "
            "with a failure.",
        ),
        "instructions": Param(
            "QA found a problem with this answer: read the reviewer's comment and correct it.",
            type="string",
            minLength=1,
            title="Rework instructions",
            description="Shown on every rework task with the reviewer's reason "
            f"(one of {', '.join(REASONS)}) and comment.",
        ),
        "request_approval": Param(
            False,
            type="boolean",
            title="Request the batch's approval when it passes",
            description="Start the batch's annotation_batch_approval run once it passes "
            "(or the leads accept it).",
        ),
    },
    render_template_as_native_obj=True,
)
def qa_rework():
    @task
    def find_batch(params: dict) -> BatchToReview:
        return batch_to_work_on(params["dataset"], params["version"])

    @task(task_id="draw_sample")
    def sample(batch: BatchToReview, params: dict) -> QARound:
        return draw_sample(
            batch,
            data_dir() / "qa",
            qa_round=params["round"],
            max_rounds=params["max_rounds"],
            max_error_rate=params["max_error_rate"],
            confidence=params["confidence"],
            size=params["sample_size"],
            fraction=params["sample_fraction"],
        )

    @task
    def round_request(qa_round: QARound) -> ProcessRequest:
        return qa_request(qa_round)

    batch = find_batch()
    qa_round = sample(batch)
    request = round_request(qa_round)
    deploy = OpenTextDeployModelsOperator(task_id="deploy_process_models")
    opened = OpenTextStartProcessOperator(
        task_id="open_round",
        process_definition_key=QA_PROCESS,
        business_key=request["business_key"],
        process_name=request["process_name"],
        variables=request["variables"],
    )
    deploy >> opened

    @task
    def round_work(qa_round: QARound, process_instance_id: str) -> list[dict]:
        # one mapped instance: op_kwargs reach the operator as values, never rendered as templates
        op_kwargs = {"qa_round": qa_round, "audit_path": str(audit_log())}
        return [{"process_instance_id": process_instance_id, "op_kwargs": op_kwargs}]

    work = round_work(qa_round, opened.output)
    recorded = OpenTextServiceTaskOperator.partial(
        task_id="record_round",
        task_definition_key=CHECK_STEP,
        work=record_round,
        done_at=tuple(ENDS),
        done_while_open=(LEAD_REVIEW, LEAD_STEP),  # escalated before: the leads have the round now
        poll_interval=OPENTEXT_POLL_SECONDS,
        response_timeout=timedelta(days=7),
    ).expand_kwargs(work)

    @task
    def outcome(qa_round: QARound, process_instance_id: str) -> QAOutcome:
        return round_outcome(qa_round, process_instance_id, OpenTextWorkflowHook())

    settled = outcome(qa_round, opened.output)
    recorded >> settled

    @task.branch
    def what_follows(outcome: QAOutcome) -> str:
        follows = {
            PASSED: "passed",
            REWORK: "create_rework",
            ESCALATED: "leads_decide",
            REJECTED: "leads_decide",
        }
        return follows[outcome["result"]]

    passed = EmptyOperator(task_id="passed")
    leads = OpenTextServiceTaskOperator.partial(
        task_id="leads_decide",
        task_definition_key=LEAD_STEP,
        work=record_lead_decision,
        done_at=LEAD_ENDS,
        people_task=LEAD_REVIEW,  # the leads' time counts from the escalation, not the round's start
        poll_interval=OPENTEXT_POLL_SECONDS,
        response_timeout=timedelta(days=7),
    ).expand_kwargs(work)

    @task(task_id="create_rework")
    def rework(batch: BatchToReview, qa_round: QARound, outcome: QAOutcome, params: dict) -> ReworkBatch:
        return create_rework(
            batch,
            qa_round,
            outcome,
            data_dir() / "qa",
            OpenTextWorkflowHook(),
            scope=params["rework_scope"],
            instructions=params["instructions"],
        )

    reworked = rework(batch, qa_round, settled)
    what_follows(settled) >> [passed, leads, reworked]
    redone = ProdigyBatchSensor(
        task_id="wait_for_rework",
        dataset=reworked["dataset"],
        min_answers=reworked["tasks"],
        poke_interval=OPENTEXT_POLL_SECONDS,
        timeout=timedelta(days=14).total_seconds(),
    )

    @task
    def next_round_request(batch: BatchToReview, params: dict) -> RunRequest:
        return next_round(batch, params)

    following = next_round_request(batch)
    redone >> following
    TriggerDagRunOnceOperator(
        task_id="start_next_round",
        run=following,
    )

    decided = EmptyOperator(task_id="qa_decided", trigger_rule="none_failed_min_one_success")

    @task
    def approval_request(
        batch: BatchToReview, qa_round: QARound, process_instance_id: str, params: dict
    ) -> RunRequest:
        final = round_outcome(qa_round, process_instance_id, OpenTextWorkflowHook())
        return approval_after_qa(batch, final, params["request_approval"])

    approval = approval_request(batch, qa_round, opened.output)
    [passed, leads] >> decided >> approval
    TriggerDagRunOnceOperator(
        task_id="start_batch_approval",
        run=approval,
    )


qa_rework()
