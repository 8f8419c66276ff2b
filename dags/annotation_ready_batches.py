"""
### Batches ready for approval (flow 1: Prodigy → OpenText → Prodigy)

Every 30 minutes: the Prodigy datasets whose meta says `{"review": {"status": "ready"}}` (or
`"requested"`: a review whose wait failed resumes with the same OpenText process) each get one
`label_escalation` run for their current version, named `escalation__<dataset>__<version>`, which settles
the items the annotators did not (senior reviewers in OpenText) and then starts the batch's
`annotation_batch_approval` run, `approval__<dataset>__<version>`: reviewers see a settled batch, however
often a batch is found ready it is reviewed once, and each batch waits for its reviewers on its own. A
dataset whose name cannot be a folder is marked `refused` in its meta, with the reason.

Steps: `prodigy_opentext.flows.batch_approval`, `prodigy_opentext.flows.escalation`; tests:
`tests/flows/test_batch_approval.py`.
"""

from __future__ import annotations

import pendulum
from _governance_deployment import DEFAULT_ARGS
from airflow.sdk import dag, task

from prodigy_opentext.core.payloads import BatchToReview
from prodigy_opentext.flows.batch_approval import find_ready_batches
from prodigy_opentext.flows.escalation import escalation_run
from prodigy_opentext.operators.dag_run import TriggerDagRunOnceOperator


@dag(
    dag_id="annotation_ready_batches",
    schedule="*/30 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["prodigy", "opentext", "approval"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
)
def annotation_ready_batches():
    @task
    def find_batches() -> list[BatchToReview]:
        return find_ready_batches()

    TriggerDagRunOnceOperator.partial(task_id="start_escalation").expand_kwargs(
        find_batches().map(escalation_run)
    )


annotation_ready_batches()
