"""
### Governance report (flow 7: lineage and governance, Prodigy → OpenText)

Daily, and on every `annotation_releases` asset event: one report, across datasets, of who labeled,
reviewed, approved and released what, when, and which consumer run (MLflow) used which release version.

1. **write_report**: checks the audit log's hash chain and the head anchored in the Airflow Variable
   `prodigy_opentext_audit_head` (what `python -m prodigy_opentext.audit verify` checks), reads every entry,
   the release folders' manifests and dataset cards, the datasets' meta in Prodigy and the approvals' task
   history in OpenText, and writes `data/reports/governance/<run>/governance_report.html` (charts as
   inline SVG, links to each approval's OpenText task history and each release's dataset card) and
   `governance_report.json` (the same report), each replaced whole. Per dataset: its versions with review,
   escalation and QA status, approvals (who, when, outcome, process and task) and releases (manifest
   sha256 checked against the audit log, card checked against the manifest, counts, agreement, consumer
   runs); a timeline of labeling, escalations, QA rounds, approvals, releases and consumer runs.
2. **record_in_opentext**: the status of each version (`governance_status`, `dataset_version`,
   `release_id`, `manifest_sha256`) on its batch approval and release sign-off processes and on the
   request processes of its dataset: process variables on a running process, a comment (once) on an ended
   one. Skipped when the audit chain is broken: nothing is written back from a log that cannot be trusted.
3. **verify_audit_chain**: a broken chain fails the run, after the report shows it at the top, naming the
   first bad line.

The Airflow UI's **Governance** view (navigation bar) shows the same report live.

Steps: `prodigy_opentext.flows.governance`; report: `prodigy_opentext.core.governance`; tests:
`tests/flows/test_governance.py`.
"""

from __future__ import annotations

import pendulum
from _governance_deployment import DEFAULT_ARGS, audit_log, data_dir
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from prodigy_opentext.flows._shared import ANNOTATION_RELEASES
from prodigy_opentext.flows.governance import (
    RecordedStatus,
    WrittenReport,
    record_status,
    require_intact_chain,
    write_report,
)


@dag(
    dag_id="governance_report",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 6 * * *", timezone="UTC"), assets=[ANNOTATION_RELEASES]
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["governance", "audit", "opentext"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
)
def governance_report():
    @task(task_id="write_report")
    def written(run_id: str | None = None) -> WrittenReport:
        return write_report(data_dir(), audit_log(), str(run_id))

    @task(task_id="record_in_opentext")
    def recorded(report: WrittenReport) -> list[RecordedStatus]:
        return record_status(report)

    @task(task_id="verify_audit_chain")
    def verified(report: WrittenReport) -> None:
        require_intact_chain(report)

    report = written()
    recorded(report)
    verified(report)


governance_report()
