"""
### Annotation request intake (flow 4: OpenText → Prodigy)

Every 10 minutes. A business user submits a request in OpenText (an `annotation_request_intake` process,
started by key or by the message `annotationRequest`: `title`, `source`, `task_type` ner / textcat /
choice, `labels`, `instructions`, `priority`, `due_date`, `approvers`, `annotators`,
`annotations_per_task`); the data owners approve it there.

1. **provision_requests**: the approved requests waiting at `provision_dataset`, in priority, then due-date
   order. Each request and its source (JSONL, CSV or plain text: a file in the intake folder
   `<data>/intake/`, or `attachment:<name>`, the file attached to the request) is checked whole:
   a missing field, a bad row, an empty file or a label outside the request's labels refuses it with a
   comment naming each, and nothing is created. Otherwise: the Prodigy
   dataset (named by the request's `dataset`, else from its title and id) with the request in its meta
   (`request`, `labels`, `instructions`, `annotator_emails`, `sessions`, `annotations_per_task`), and its
   task stream (`<data>/intake/streams/<dataset>/tasks.jsonl`, named by the meta's `stream`; deduplicated by
   task hash, tokenised for ner, the labels as options for textcat and choice), served to the team's
   sessions only (`PRODIGY_ALLOWED_SESSIONS` = the meta's `sessions`). Reruns find the same dataset.
2. **post_progress**: for every provisioned request, the answers against the target (tasks times
   annotations per task) and per annotator, posted on the request (`progress`); at the target the batch
   is marked ready for review and its `label_escalation` run starts (**start_review**), and the request
   is closed with the batch version and the run id.

Steps: `prodigy_opentext.flows.intake`; rules: `prodigy_opentext.core.intake`; process model:
`include/bpmn/annotation_request_intake.bpmn20.xml`; tests: `tests/flows/test_intake.py`.
"""

from __future__ import annotations

import pendulum
from _governance_deployment import DEFAULT_ARGS, audit_log, data_dir
from airflow.sdk import dag, task

from prodigy_opentext.core.payloads import ProvisionedDataset, RunRequest
from prodigy_opentext.flows.intake import post_progress, provision_requests
from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook
from prodigy_opentext.operators.dag_run import TriggerDagRunOnceOperator
from prodigy_opentext.operators.opentext import OpenTextDeployModelsOperator


@dag(
    dag_id="annotation_request_intake",
    schedule="*/10 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["prodigy", "opentext", "intake"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
)
def annotation_request_intake():
    @task(task_id="provision_requests")
    def provision() -> list[ProvisionedDataset]:
        intake = data_dir() / "intake"
        return provision_requests(intake, intake / "streams", audit_log(), opentext=OpenTextWorkflowHook())

    @task(task_id="post_progress")
    def progress() -> list[RunRequest]:
        return post_progress(audit_log(), opentext=OpenTextWorkflowHook())

    deploy = OpenTextDeployModelsOperator(task_id="deploy_process_models")
    provisioned, reviews = provision(), progress()
    deploy >> provisioned >> reviews
    TriggerDagRunOnceOperator.partial(task_id="start_review").expand_kwargs(reviews)


annotation_request_intake()
