"""
### Label escalation (flow 2: Prodigy → OpenText → Prodigy)

The items annotators did not settle go to senior reviewers in OpenText, and every decision comes back
into Prodigy as an adjudicated example, so batch approval and the release count the item as settled.
`annotation_ready_batches` starts one run per ready batch (`escalation__<dataset>__<version>`); a person
can start one from the trigger form.

1. **find_batch**: the dataset up to the `version` given (`b<last example id>`), else up to its last
   example now. A name that cannot be a folder, no label scheme, or a version the dataset does not hold
   fails at once.
2. **find_cases**: the items that need a second look, from the merged answers: annotators disagree
   (versions grouped as Prodigy's `review` recipe groups them), an answer `ignore` or `flagged: true`
   (each optional), or `meta.score` below `min_score`; items already adjudicated are settled. They are
   put in cases of up to `items_per_case`. A session the dataset's meta (`annotator_emails`) does not
   name fails here: nobody may adjudicate an item they annotated.
3. **open_case**: one `label_dispute_resolution` process per case (businessKey
   `label_dispute_resolution:<dataset>:<version>:<digest of its items>`, found again on reruns; items a
   rerun still finds unsettled go to a case of their own), with each item's text, its versions and the
   sessions that gave them, the reasons and the item's agreement. Senior annotators
   decide each item (take a version, correct it, or reject it); past `escalation_after` the model hands
   the case to the annotation leads.
4. **adjudicate**: one per case, deferred (no worker slot held) until the reviewers have decided and the
   process waits at its `check_decisions` step, Airflow's own. Each decision becomes an adjudicated
   example (`_adjudicated: true`, `meta.adjudication` with the process, reviewer, time, decision and the
   sessions whose version was taken) in the adjudication dataset (`<dataset>_adjudicated`, or the meta's
   `adjudication_dataset`), once however often it runs. Decisions that do not fit the case (no decision,
   an item not in the case or left out, a version the item does not have), or a reviewer who annotated
   one of its items, send the case back in OpenText with a comment and `review_problems` saying what to
   fix; nothing is written then, and the task waits for the next decision.
5. **start_next**: with `request_approval` (as `annotation_ready_batches` starts it), once every case is
   decided the settled batch goes on: to its first QA round (`qa_rework` run `qa__<dataset>__<version>__r1`)
   when the dataset's meta asks for QA (`qa_review`, the QA settings), else to its approval
   (`annotation_batch_approval` run `approval__<dataset>__<version>`), so reviewers see a settled batch.

Steps: `prodigy_opentext.flows.escalation`; process model:
`include/bpmn/label_dispute_resolution.bpmn20.xml`; tests: `tests/flows/test_escalation.py`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from _governance_deployment import BATCH_PARAMS, DEFAULT_ARGS, OPENTEXT_POLL_SECONDS, audit_log, data_dir
from airflow.sdk import Param, dag, task

from prodigy_opentext.core.escalation import CHECK_STEP, ESCALATION_PROCESS, RESOLVED_END
from prodigy_opentext.core.payloads import BatchToReview, EscalationCase, ProcessRequest, RunRequest
from prodigy_opentext.flows.batch_approval import batch_to_work_on
from prodigy_opentext.flows.escalation import (
    after_escalation,
    case_request,
    check_and_write,
    find_cases,
)
from prodigy_opentext.operators.dag_run import TriggerDagRunOnceOperator
from prodigy_opentext.operators.opentext import (
    OpenTextDeployModelsOperator,
    OpenTextServiceTaskOperator,
    OpenTextStartProcessOperator,
)


@dag(
    dag_id="label_escalation",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=16,
    default_args=DEFAULT_ARGS,
    tags=["prodigy", "opentext", "escalation"],
    doc_md=__doc__,
    params={
        **BATCH_PARAMS,
        "min_score": Param(
            None,
            type=["null", "number"],
            title="Minimum score",
            description="Items whose meta.score is below it go to reviewers; empty: scores are not checked.",
        ),
        "include_ignored": Param(True, type="boolean", title="Escalate ignored answers"),
        "include_flagged": Param(True, type="boolean", title="Escalate flagged answers"),
        "items_per_case": Param(25, type="integer", minimum=1, maximum=500, title="Items per case"),
        "request_approval": Param(
            False,
            type="boolean",
            title="Send the batch on afterwards",
            description=(
                "Once every case is decided, start the batch's first QA round (qa_rework) when its "
                "dataset's meta asks for QA (qa_review), else its annotation_batch_approval run."
            ),
        ),
        "escalation_after": Param(
            "PT4H",
            type="string",
            pattern=r"^P",
            title="Escalate after",
            description="ISO 8601 duration after which an undecided case goes to the annotation leads.",
        ),
    },
    render_template_as_native_obj=True,
)
def label_escalation():
    @task
    def find_batch(params: dict) -> BatchToReview:
        return batch_to_work_on(params["dataset"], params["version"])

    @task(task_id="find_cases")
    def unsettled_cases(batch: BatchToReview, params: dict) -> list[EscalationCase]:
        return find_cases(
            batch,
            data_dir() / "escalation",
            min_score=params["min_score"],
            include_ignored=params["include_ignored"],
            include_flagged=params["include_flagged"],
            per_case=params["items_per_case"],
        )

    @task
    def case_requests(cases: list[EscalationCase], params: dict) -> list[ProcessRequest]:
        return [case_request(case, params["escalation_after"]) for case in cases]

    batch = find_batch()
    cases = unsettled_cases(batch)
    deploy = OpenTextDeployModelsOperator(task_id="deploy_process_models")
    opened = OpenTextStartProcessOperator.partial(
        task_id="open_case", process_definition_key=ESCALATION_PROCESS
    ).expand_kwargs(case_requests(cases))
    deploy >> opened

    @task
    def case_work(cases: list[EscalationCase], process_ids: list[str]) -> list[dict]:
        return [
            {"process_instance_id": pid, "op_kwargs": {"case": case, "audit_path": str(audit_log())}}
            for case, pid in zip(cases, process_ids, strict=True)
        ]

    adjudicated = OpenTextServiceTaskOperator.partial(
        task_id="adjudicate",
        task_definition_key=CHECK_STEP,
        work=check_and_write,
        done_at=(RESOLVED_END,),
        poll_interval=OPENTEXT_POLL_SECONDS,
        response_timeout=timedelta(days=7),
    ).expand_kwargs(case_work(cases, opened.output))

    @task
    def next_request(batch: BatchToReview, params: dict) -> RunRequest:
        return after_escalation(batch, params["request_approval"])

    following = next_request(batch)
    start = TriggerDagRunOnceOperator(
        task_id="start_next",
        run=following,
        # no case at all skips the cases' tasks (the batch is settled); no batch skips the request too
        trigger_rule="none_failed_min_one_success",
    )
    adjudicated >> start


label_escalation()
