"""
### Controlled dataset release (flow 3: Prodigy → OpenText → MLOps)

Only complete, valid and approved annotation data reaches MLOps.

1. **resolve_target**: the dataset and version (`b<last example id>`) from the run's params (no version:
   the one the dataset's latest review approved); the dataset must hold that version. Whether it is
   regulated comes from the dataset's meta, never from params.
   **check_batch_approval** refuses early, before anyone is asked to sign off, when OpenText holds no
   approval of this batch.
2. **stage_data**: streams the version out of Prodigy and merges every annotator's answers into final
   examples (one per item); open disputes are listed beside them.
3. **validate**: the Great Expectations suite `include/gx/annotation_dataset` (required fields, allowed
   answers, unique task hashes, labels in scheme, spans inside the text and on token boundaries, examples
   per label, ignore rate, no open disputes). A failure names the expectations and sample rows.
4. **request_signoff** / **wait_for_signoff**: a `dataset_release_signoff` process in OpenText with the
   review report attached (the batch's figures and this validation), waited for deferred.
5. **check_approvals**: reads the batch approval and the release sign-off of this exact version back from
   OpenText; a missing, rejected, cancelled or superseded one refuses the release, and regulated data needs
   its compliance review. Each step must be in the task history, decided by a member of its group (per
   `include/policies/approvals.json`), by nobody who annotated the batch and nobody twice. Params that
   claim an approval change nothing.
6. **publish**: writes `releases/<dataset>/<version>/` (data, disputes, `dataset_card.html`, `manifest.json`
   with checksums, counts, labels, agreement figures, the GX summary, approvals, sessions, the card's
   sha256 and this run's id) under the release root
   (`data/releases` by default), immutably: an equal rerun is a no-op, different content an error.
7. **announce**: updates the `annotation_releases` asset, which schedules MLOps consumers, once per
   release: a rerun of an announced release skips (no second event). The event carries the release's
   idempotency key (`<dataset>:<version>:<manifest sha256>`).
8. **hand_off**: records the announcement, then POSTs the release summary to the `mlops_handoff` HTTP
   connection when one is defined, with the key as `Idempotency-Key`; once, unless the earlier one failed.

Started by `annotation_batch_approval` for each approved batch, or by hand from the trigger form.

Steps: `prodigy_opentext.flows.release`; process model: `include/bpmn/dataset_release_signoff.bpmn20.xml`;
tests: `tests/flows/test_release.py`.
"""

from __future__ import annotations

import pendulum
from _governance_deployment import DEFAULT_ARGS, OPENTEXT_POLL_SECONDS, audit_log, data_dir
from airflow.sdk import Param, dag, task

from prodigy_opentext.core.approvals import RELEASE_SIGNOFF_PROCESS
from prodigy_opentext.core.paths import PLAIN_NAME
from prodigy_opentext.core.payloads import (
    ApprovalRecord,
    HandOff,
    ProcessRequest,
    PublishedRelease,
    ReleaseTarget,
    StagedRelease,
)
from prodigy_opentext.flows._shared import ANNOTATION_RELEASES
from prodigy_opentext.flows.release import (
    announcement,
    check_batch_approval,
    check_release_approvals,
    hand_off_release,
    release_signoff_request,
    resolve_release_target,
    stage_release_data,
)
from prodigy_opentext.operators.annotation_validation import AnnotationValidationOperator
from prodigy_opentext.operators.opentext import OpenTextStartProcessOperator
from prodigy_opentext.operators.release import PublishReleaseOperator
from prodigy_opentext.sensors.opentext import OpenTextApprovalSensor


@dag(
    dag_id="dataset_release",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["prodigy", "opentext", "release", "great-expectations"],
    doc_md=__doc__,
    params={
        "dataset": Param(
            type="string",
            pattern=PLAIN_NAME.pattern,
            title="Dataset",
            description=(
                "The Prodigy dataset to release (required): letters, digits, '.', '_' and '-', starting "
                "with a letter or digit."
            ),
        ),
        "version": Param(
            None,
            type=["null", "string"],
            pattern=r"^b[0-9]+$",
            title="Version",
            description=(
                "b<last example id> of an approved batch, as batch approval names it. Empty: the version the "
                "dataset's latest review approved (its meta's review.version); refused when that review "
                "approved none."
            ),
        ),
        "max_ignore_rate": Param(
            0.2,
            type="number",
            minimum=0,
            maximum=1,
            title="Largest share of ignored answers",
            description=(
                "Validation fails when more than this share of the final examples (one per item) has the "
                "answer ignore: a fraction from 0 to 1, 0.2 = 20 %."
            ),
        ),
        "min_examples_per_label": Param(
            1,
            type="integer",
            minimum=0,
            title="Fewest examples per label",
            description=(
                "Validation fails when a label of the dataset's scheme is carried by fewer final examples "
                "(accepted or rejected) than this: a count, 0 or more; 0 checks nothing."
            ),
        ),
    },
    render_template_as_native_obj=True,
    # Read where the task runs (the worker's environment decides where data goes), not at parse time.
    user_defined_macros={"data_dir": data_dir, "audit_log": audit_log},
)
def dataset_release():
    @task
    def resolve_target(params: dict) -> ReleaseTarget:
        return resolve_release_target(params["dataset"], params["version"])

    @task(task_id="check_batch_approval")
    def batch_approval_holds(target: ReleaseTarget) -> ReleaseTarget:
        check_batch_approval(target)
        return target

    @task
    def stage_data(target: ReleaseTarget, run_id: str | None = None) -> StagedRelease:
        return stage_release_data(target, data_dir() / "staging", str(run_id), audit_log())

    staged = stage_data(batch_approval_holds(resolve_target()))

    validate = AnnotationValidationOperator(
        task_id="validate",
        export_path=staged["annotations"],
        disputes_path=staged["disputes"],
        label_scheme=staged["label_scheme"],
        min_examples_per_label="{{ params.min_examples_per_label }}",
        max_ignore_rate="{{ params.max_ignore_rate }}",
    )

    @task(multiple_outputs=True)
    def signoff_request(staged: StagedRelease, validation: dict) -> ProcessRequest:
        return release_signoff_request(staged, validation)

    request = signoff_request(staged, validate.output)
    requested = OpenTextStartProcessOperator(
        task_id="request_signoff",
        process_definition_key=RELEASE_SIGNOFF_PROCESS,
        business_key=request["business_key"],
        process_name=request["process_name"],
        variables=request["variables"],
        attachments=request["attachments"],
    )
    signed_off = OpenTextApprovalSensor(
        task_id="wait_for_signoff",
        process_instance_id=requested.output,
        on_rejection="fail",
        poke_interval=OPENTEXT_POLL_SECONDS,
    )

    @task
    def check_approvals(staged: StagedRelease) -> list[ApprovalRecord]:
        return check_release_approvals(staged)

    approvals = check_approvals(staged)
    signed_off >> approvals

    published = PublishReleaseOperator(
        task_id="publish",
        staged=staged,
        validation=validate.output,
        approvals=approvals,
        release_root="{{ data_dir() }}",
        audit_path="{{ audit_log() }}",
    ).output

    @task(outlets=[ANNOTATION_RELEASES])
    def announce(release: PublishedRelease, outlet_events=None) -> PublishedRelease:
        outlet_events[ANNOTATION_RELEASES].extra = announcement(release, audit_log())
        return release

    @task(trigger_rule="none_failed")
    def hand_off(release: PublishedRelease) -> HandOff | None:
        return hand_off_release(release, audit_log())

    announce(published) >> hand_off(published)


dataset_release()
