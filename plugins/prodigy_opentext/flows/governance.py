"""The steps of lineage and governance reporting (flow 7), as functions the DAG's tasks and the Airflow UI's
Governance view call.

DAG ``governance_report`` (``dags/governance_report.py``); the report itself is
:mod:`prodigy_opentext.core.governance`; the view :mod:`prodigy_opentext.governance_view`; tests
``tests/flows/test_governance.py``.

The report is built from the audit log (its chain checked against the head anchored in Airflow), the
release folders, the datasets' meta in Prodigy and OpenText's task history, written as HTML and JSON,
and its status written back on the OpenText processes concerned. A broken chain is shown in the report
first, nothing is written back from a log that cannot be trusted, and the run fails once the report is
there for people to see.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict, TypeVar

from prodigy_opentext._opentext.variables import from_rest_variables
from prodigy_opentext.audit import VariableAnchor, verify
from prodigy_opentext.core.audit import verify_audit_log
from prodigy_opentext.core.export import partial_path
from prodigy_opentext.core.governance import (
    REPORT_HTML,
    REPORT_JSON,
    WATCHED_PROCESSES,
    GovernanceReport,
    Links,
    OpenProcess,
    ReleaseView,
    TaskStep,
    approval_processes,
    build_report,
    chain_status,
    governance_report_html,
    read_entries,
    read_releases,
    status_records,
)
from prodigy_opentext.core.paths import run_folder_name
from prodigy_opentext.exceptions import OpenTextNotFoundError
from prodigy_opentext.failures import AuditLogTampered
from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook
from prodigy_opentext.hooks.prodigy import ProdigyHook

log = logging.getLogger(__name__)

INBOX_URL_EXTRA = "inbox_url"
"""The ``opentext_workflow`` connection's extra naming where reviewers open tasks and their history;
without it, ``<host>/inbox`` (the sandbox's inbox)."""
T = TypeVar("T")


class WrittenReport(TypedDict):
    """Where a run wrote the report, and what its audit chain check said."""

    html: str
    json: str
    chain_valid: bool
    chain_summary: str
    broken_line: int | None
    releases: int
    problems: list[str]


class RecordedStatus(TypedDict):
    process_instance_id: str
    recorded_as: str
    """``variables`` (a running process), ``comment`` (an ended one), ``unchanged``, or ``not found``."""


def inbox_url(opentext_conn_id: str = OpenTextWorkflowHook.default_conn_name) -> str:
    """Where the report's OpenText links lead (:data:`INBOX_URL_EXTRA`)."""
    hook = OpenTextWorkflowHook(opentext_conn_id)
    configured = hook.get_connection(opentext_conn_id).extra_dejson.get(INBOX_URL_EXTRA)
    return str(configured or f"{hook.settings.root_url}/inbox").rstrip("/")


def _gathered(what: str, read: Callable[[], T], empty: T, problems: list[str] | None) -> T:
    """``read()``; with ``problems`` (the live view), a failure is named there and ``empty`` stands in, so
    one system being down does not hide the rest; without, it fails the task (and is retried)."""
    if problems is None:
        return read()
    try:
        return read()
    except Exception as failure:
        log.warning("governance report: %s could not be read: %s", what, failure)
        problems.append(f"{what} could not be read ({type(failure).__name__}: {failure}): shown without it")
        return empty


def _task_history(hook: OpenTextWorkflowHook, pids: list[str]) -> dict[str, list[TaskStep]]:
    history = {}
    for pid in pids:
        tasks = hook.historic_tasks(processInstanceId=pid, finished=True)
        history[pid] = [
            TaskStep(
                task_id=str(task["id"]),
                name=task.get("name"),
                assignee=task.get("assignee"),
                completed_at=task.get("endTime"),
            )
            for task in sorted(tasks, key=lambda t: str(t.get("endTime") or ""))
        ]
    return history


def _open_processes(hook: OpenTextWorkflowHook) -> list[OpenProcess]:
    found = []
    for key in WATCHED_PROCESSES:
        for process in hook.find_processes(processDefinitionKey=key, includeProcessVariables=True):
            variables = from_rest_variables(process.get("variables"))
            found.append(
                OpenProcess(
                    process_key=key,
                    process_instance_id=str(process["id"]),
                    dataset=variables.get("dataset"),
                    version=variables.get("version"),
                    name=process.get("name"),
                )
            )
    return found


def collect_report(
    data_root: Path,
    audit_path: Path,
    *,
    prodigy_conn_id: str = ProdigyHook.default_conn_name,
    opentext_conn_id: str = OpenTextWorkflowHook.default_conn_name,
    tolerant: bool = False,
) -> GovernanceReport:
    """The report as the systems hold it now: the audit log checked against its anchored head, the
    releases under ``<data_root>/releases``, the consumers' ledgers under ``<data_root>/consumers``, the
    datasets' meta, and OpenText's history of the approvals and its open processes. ``tolerant`` (the
    live view): Prodigy or OpenText being unreachable is a problem in the report, not a failure."""
    anchored = VariableAnchor(audit_path).anchored_head()
    verification = verify_audit_log(audit_path, [anchored] if anchored else [])
    chain = chain_status(
        str(audit_path),
        verification,
        anchored=anchored is not None,
        verdict=verify(audit_path, [], use_airflow=True),
    )
    entries = read_entries(audit_path)
    problems: list[str] | None = [] if tolerant else None
    prodigy = ProdigyHook(prodigy_conn_id)
    no_datasets: list[dict[str, Any]] = []
    listed = _gathered("Prodigy's datasets", lambda: prodigy.list_datasets(), no_datasets, problems)
    opentext = OpenTextWorkflowHook(opentext_conn_id)
    no_history: dict[str, list[TaskStep]] = {}
    history = _gathered(
        "OpenText's task history",
        lambda: _task_history(opentext, approval_processes(entries)),
        no_history,
        problems,
    )
    no_processes: list[OpenProcess] = []
    running = _gathered(
        "OpenText's open processes", lambda: _open_processes(opentext), no_processes, problems
    )
    ledgers = {str(p): read_entries(p) for p in sorted((data_root / "consumers").glob("*.jsonl"))}
    report = build_report(
        entries,
        chain,
        read_releases(data_root),
        metas={str(d["name"]): d.get("meta") or {} for d in listed},
        ledgers=ledgers,
        history=history,
        open_processes=running,
    )
    report["problems"] += problems or []
    return report


def live_report_html(
    data_root: Path,
    audit_path: Path,
    card_link: Callable[[ReleaseView], str],
    *,
    prodigy_conn_id: str = ProdigyHook.default_conn_name,
    opentext_conn_id: str = OpenTextWorkflowHook.default_conn_name,
) -> str:
    """The report as the Governance view shows it, gathered now: a system that cannot be read is named on
    the page instead of failing it (its links left out); ``card_link`` is where the view serves cards."""
    report = collect_report(
        data_root,
        audit_path,
        prodigy_conn_id=prodigy_conn_id,
        opentext_conn_id=opentext_conn_id,
        tolerant=True,
    )
    no_inbox: str | None = None
    inbox = _gathered(
        "the OpenText inbox's address", lambda: inbox_url(opentext_conn_id), no_inbox, report["problems"]
    )
    return governance_report_html(report, Links(inbox, card_link))


def card_link_from(folder: Path) -> Callable[[ReleaseView], str]:
    """A release's dataset card as a link relative to the report's folder (both live under the data
    folder, so the link holds wherever that folder is mounted)."""

    def href(release: ReleaseView) -> str:
        card = Path(release["path"]) / str(release["card_file"])
        return Path(os.path.relpath(card, folder)).as_posix()

    return href


def _write_atomically(path: Path, text: str) -> None:
    partial = partial_path(path)
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def write_report(
    data_root: Path,
    audit_path: Path,
    run_id: str,
    *,
    prodigy_conn_id: str = ProdigyHook.default_conn_name,
    opentext_conn_id: str = OpenTextWorkflowHook.default_conn_name,
) -> WrittenReport:
    """Collect the report and write ``<data_root>/reports/governance/<run>/governance_report.html`` and
    ``.json``, each replaced whole (readers see the old file or the new one)."""
    report = collect_report(
        data_root, audit_path, prodigy_conn_id=prodigy_conn_id, opentext_conn_id=opentext_conn_id
    )
    folder = data_root / "reports" / "governance" / run_folder_name(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    links = Links(inbox_url(opentext_conn_id), card_link_from(folder))
    _write_atomically(folder / REPORT_JSON, json.dumps(report, indent=2, sort_keys=True) + "\n")
    _write_atomically(folder / REPORT_HTML, governance_report_html(report, links))
    chain = report["chain"]
    (log.info if chain["valid"] else log.error)("audit log %s: %s", audit_path, chain["summary"])
    for problem in report["problems"]:
        log.warning("governance report: %s", problem)
    log.info("governance report written to %s", folder / REPORT_HTML)
    return WrittenReport(
        html=str(folder / REPORT_HTML),
        json=str(folder / REPORT_JSON),
        chain_valid=chain["valid"],
        chain_summary=chain["summary"],
        broken_line=chain["broken_line"],
        releases=len(report["releases"]),
        problems=report["problems"],
    )


def record_status(
    written: WrittenReport, opentext_conn_id: str = OpenTextWorkflowHook.default_conn_name
) -> list[RecordedStatus]:
    """Write the report's status (:func:`~prodigy_opentext.core.governance.status_records`) on each
    OpenText process concerned: as process variables on a running process; as a comment on an ended one,
    whose variables OpenText no longer changes (the comment is added once, so a rerun adds none). Nothing
    is written from a log whose chain is broken."""
    from airflow.sdk.exceptions import AirflowSkipException

    if not written["chain_valid"]:
        raise AirflowSkipException(
            f"the audit log is not intact ({written['chain_summary']}): no status is written to OpenText "
            "from it"
        )
    report: GovernanceReport = json.loads(Path(written["json"]).read_text())
    hook = OpenTextWorkflowHook(opentext_conn_id)
    recorded = []
    for record in status_records(report):
        pid = record["process_instance_id"]
        try:
            process = hook.get_historic_process(pid)
        except OpenTextNotFoundError:
            log.warning(
                "process %s (%s) is not in OpenText: its status is not recorded", pid, record["dataset"]
            )
            recorded.append(RecordedStatus(process_instance_id=pid, recorded_as="not found"))
            continue
        if not process.get("endTime"):
            hook.set_variables(pid, record["variables"])
            how = "variables"
        elif any(c.get("message") == record["comment"] for c in hook.list_comments(pid)):
            how = "unchanged"
        else:
            hook.add_comment(pid, record["comment"])
            how = "comment"
        log.info("process %s: %s (%s)", pid, record["comment"], how)
        recorded.append(RecordedStatus(process_instance_id=pid, recorded_as=how))
    return recorded


def require_intact_chain(written: WrittenReport) -> None:
    """Fail the run, without retries, when the report found the audit log broken: the report is written
    (people see what broke), and the command that names the line is in the message."""
    if not written["chain_valid"]:
        raise AuditLogTampered(
            f"{written['chain_summary']} (report: {written['html']}); python -m prodigy_opentext.audit "
            "verify names what is wrong"
        )
