"""
### Regulated content access (flow 5: OpenText → Prodigy → OpenText)

Every 10 minutes, and on every `annotation_releases` asset event. Compliance or a business team opens a
`regulated_content_access` case in OpenText: an annotation request (`title`, `dataset`, `task_type`,
`labels`, `instructions`, `annotators` proposed, `annotations_per_task`, `priority`, `due_date`) whose
`content_source` is a file in the holding area (`REGULATED_HOLDING_DIR`, default
`<data>/regulated/holding/`: a folder only Airflow reads, never the Prodigy server), and its
`classification`.

1. **hold_content**: the content is checked where it is held (every bad row or field named, nothing
   created) and its task count and sha256 posted on the case. Nothing enters Prodigy.
2. A compliance officer grants access in OpenText, naming the annotators (`allowed_annotators`; not
   themselves), or denies it.
3. **load_content**: the held content, unchanged since it was checked (same sha256), is masked by the
   redaction callable (`REGULATED_REDACTION`, a dotted path; default
   `prodigy_opentext.core.regulated.mask_contact_details`: e-mail addresses and phone numbers; `none`: no
   redaction) and becomes a regulated dataset (meta `regulated`, `classification`, `access`) with its task
   stream in `<data>/regulated/streams/<dataset>/`, served to the allowed sessions only
   (`PRODIGY_ALLOWED_SESSIONS` = the meta's `sessions`).
4. **post_progress**: progress posted on the case; at the target the batch goes to review (label
   escalation, then batch approval with its compliance step) (**start_review**).
5. **close_released**: once a published release holds every task, the case is completed with metadata
   only (counts, annotators, dates, hashes, release version) and ends closed.
6. **freeze_revoked** (after **load_content**, so a case cancelled while it loaded is caught in the same
   run): a case cancelled in OpenText after access was granted freezes its dataset: its stream is
   withdrawn, no session is served (stop a Prodigy server still running for it), batch approval and
   the release refuse it, even one whose sign-off was already waiting.

Steps: `prodigy_opentext.flows.regulated`; rules: `prodigy_opentext.core.regulated`; process model:
`include/bpmn/regulated_content_access.bpmn20.xml`; tests: `tests/flows/test_regulated.py`.
"""

from __future__ import annotations

import pendulum
from _governance_deployment import DEFAULT_ARGS, REGULATED_REDACTION, audit_log, data_dir, holding_dir
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from prodigy_opentext.core.payloads import ClosedCase, HeldContent, ProvisionedDataset, RunRequest
from prodigy_opentext.core.regulated import REGULATED_PROCESS
from prodigy_opentext.flows._shared import ANNOTATION_RELEASES
from prodigy_opentext.flows.intake import post_progress
from prodigy_opentext.flows.regulated import (
    close_released,
    freeze_revoked,
    hold_cases,
    load_granted,
    redaction_from,
)
from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook
from prodigy_opentext.operators.dag_run import TriggerDagRunOnceOperator
from prodigy_opentext.operators.opentext import OpenTextDeployModelsOperator


@dag(
    dag_id="regulated_content_access",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("*/10 * * * *", timezone="UTC"), assets=[ANNOTATION_RELEASES]
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["prodigy", "opentext", "regulated"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
)
def regulated_content_access():
    @task(task_id="freeze_revoked", trigger_rule="all_done")  # a revocation waits for no other case
    def freeze() -> list[str]:
        return freeze_revoked(audit_log(), opentext=OpenTextWorkflowHook())

    @task(task_id="hold_content")
    def hold() -> list[HeldContent]:
        return hold_cases(holding_dir(), audit_log(), opentext=OpenTextWorkflowHook())

    @task(task_id="load_content")
    def load() -> list[ProvisionedDataset]:
        return load_granted(
            holding_dir(),
            data_dir() / "regulated" / "streams",
            audit_log(),
            opentext=OpenTextWorkflowHook(),
            redact=redaction_from(REGULATED_REDACTION),
        )

    @task(task_id="post_progress")
    def progress() -> list[RunRequest]:
        return post_progress(audit_log(), opentext=OpenTextWorkflowHook(), process_key=REGULATED_PROCESS)

    @task(task_id="close_released")
    def close() -> list[ClosedCase]:
        return close_released(data_dir(), audit_log(), opentext=OpenTextWorkflowHook())

    deploy = OpenTextDeployModelsOperator(task_id="deploy_process_models")
    held, loaded, frozen, reviews, closed = hold(), load(), freeze(), progress(), close()
    deploy >> held >> loaded >> frozen >> reviews >> closed
    TriggerDagRunOnceOperator.partial(task_id="start_review").expand_kwargs(reviews)


regulated_content_access()
