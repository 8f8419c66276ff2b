"""
### Model improvement requests (flow 8: OpenText → Prodigy → OpenText)

Every 10 minutes, and on every `annotation_releases` asset event. Operations, customer service or
compliance submit a `model_improvement_request` process in OpenText: `model`, `problem` (what goes wrong),
`examples` (the inputs it gets wrong: texts or task objects), `policy_reference`, and either `dataset` (an
Airflow-provisioned dataset the examples join) or `labels`, `annotators` and `task_type` for a new one. The
ML leads approve it there.

1. **add_examples**: every approved request's examples become tasks tagged with the request
   (`meta.request`, `meta.model`, `meta.policy_reference`), checked like an annotation request's (labels
   within the dataset's, the fields named): in a new dataset (`improve_<model>_<id>`, followed by
   **post_progress** like an annotation request: its batch goes to review when the team is done), or
   appended to the named dataset's task stream (the tasks it holds already are not). A request that cannot
   be taken gets a comment naming why and nothing is created.
2. **close_delivered**: a request whose tasks a published release holds, every one of them (by input
   hash), is completed with the release version and its manifest's sha256.

Steps: `prodigy_opentext.flows.improvement`; process model:
`include/bpmn/model_improvement_request.bpmn20.xml`; tests: `tests/flows/test_improvement.py`.
"""

from __future__ import annotations

import pendulum
from _governance_deployment import DEFAULT_ARGS, audit_log, data_dir
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from prodigy_opentext.core.payloads import ProvisionedDataset, RunRequest
from prodigy_opentext.flows._shared import ANNOTATION_RELEASES
from prodigy_opentext.flows.improvement import IMPROVEMENT_PROCESS, add_requested_examples, close_delivered
from prodigy_opentext.flows.intake import post_progress
from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook
from prodigy_opentext.operators.dag_run import TriggerDagRunOnceOperator
from prodigy_opentext.operators.opentext import OpenTextDeployModelsOperator


@dag(
    dag_id="model_improvement_requests",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("*/10 * * * *", timezone="UTC"), assets=[ANNOTATION_RELEASES]
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["prodigy", "opentext", "improvement"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
)
def model_improvement_requests():
    @task(task_id="add_examples")
    def add() -> list[ProvisionedDataset]:
        return add_requested_examples(
            data_dir() / "intake" / "streams", audit_log(), opentext=OpenTextWorkflowHook()
        )

    @task(task_id="post_progress")
    def progress() -> list[RunRequest]:
        return post_progress(audit_log(), opentext=OpenTextWorkflowHook(), process_key=IMPROVEMENT_PROCESS)

    @task(task_id="close_delivered")
    def close() -> list[dict]:
        return close_delivered(data_dir(), audit_log(), opentext=OpenTextWorkflowHook())

    deploy = OpenTextDeployModelsOperator(task_id="deploy_process_models")
    added, reviews, closed = add(), progress(), close()
    deploy >> added >> reviews >> closed
    TriggerDagRunOnceOperator.partial(task_id="start_review").expand_kwargs(reviews)


model_improvement_requests()
