"""The steps of QA and rework (flow 6), as functions the DAG's tasks call.

DAG ``qa_rework`` (``dags/qa_rework.py``); process model ``include/bpmn/qa_review.bpmn20.xml``; tests
``tests/flows/test_qa.py``.

Each round of a dataset version draws a seeded, stratified sample of the annotators' current answers;
a QA reviewer judges it in OpenText (one ``qa_review`` process per round); Airflow records the round's
figures on the process and in the audit log and says what follows: the batch passes, its failed answers
go back to their annotators as a rework dataset, or after the last round the annotation leads decide.
Nobody who annotated the batch judges it or decides on it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prodigy_opentext._opentext.variables import from_rest_variables
from prodigy_opentext.core.approvals import same_person
from prodigy_opentext.core.payloads import (
    BatchToReview,
    Decision,
    ProcessRequest,
    QAFigures,
    QAOutcome,
    QARound,
    ReworkBatch,
    RunRequest,
    ServiceTaskResult,
)
from prodigy_opentext.core.qa import (
    ENDS,
    FIGURES_VARIABLE,
    JUDGEMENTS_VARIABLE,
    LEAD_ENDS,
    LEAD_OUTCOMES,
    LEAD_REVIEW,
    PASSED,
    QA_PROCESS,
    REASONS,
    RESULT_VARIABLE,
    REVIEWER_VARIABLE,
    REWORK,
    SENT_BACK,
    current_answers,
    draw_round,
    figures_summary,
    parse_judgements,
    reviewer_view,
    rework_answers,
    rework_dataset,
    rework_task,
    round_figures,
    round_result,
    sample_problem,
)
from prodigy_opentext.core.records import dumps_compact, sessions_of
from prodigy_opentext.exceptions import QAJudgementsInvalid
from prodigy_opentext.failures import DatasetRefused, QASampleChanged
from prodigy_opentext.flows._approvals import annotators_of
from prodigy_opentext.flows._shared import ExportedAnswers, checked_name, export_answers, record_in_audit_log
from prodigy_opentext.flows.batch_approval import approval_run
from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook
from prodigy_opentext.hooks.prodigy import ProdigyHook

log = logging.getLogger(__name__)

QA_DAG = "qa_rework"
LEAD_STEP = "record_lead"
"""Airflow's step after the leads decided on a batch that failed its last round."""
NO_LEAD_OUTCOME = {"outcome": "", f"{LEAD_REVIEW}_outcome": ""}
"""What clears an outcome before the leads decide, so only the lead who completes the task gives one."""


def _exported(batch: BatchToReview, work_root: Path, qa_round: int, prodigy_conn_id: str) -> ExportedAnswers:
    dataset, version = batch["dataset"], batch["version"]
    folder = work_root / checked_name(dataset, "dataset") / checked_name(version, "version") / f"r{qa_round}"
    return export_answers(dataset, batch["last_example_id"], folder, prodigy_conn_id, before_round=qa_round)


def draw_sample(
    batch: BatchToReview,
    work_root: Path,
    *,
    qa_round: int,
    max_rounds: int,
    max_error_rate: float,
    confidence: float,
    size: int | None = None,
    fraction: float | None = None,
    prodigy_conn_id: str = ProdigyHook.default_conn_name,
) -> QARound:
    """Round ``qa_round``'s sample of the batch's current answers (corrections from earlier rounds in,
    none from later ones: a rerun draws the same sample).

    Every session must name its person (the dataset meta ``annotator_emails``), so nobody judges a batch
    they annotated; a session naming nobody fails here, before anyone is asked.
    """
    fraction = None if size is not None else fraction  # a size given wins over a fraction
    exported = _exported(batch, work_root, qa_round, prodigy_conn_id)
    answers = current_answers([*exported.tasks, *exported.corrections])
    problem = sample_problem(len(answers), size, fraction, max_error_rate, confidence)
    if problem:
        raise DatasetRefused(f"{batch['dataset']}@{batch['version']} QA round {qa_round}: {problem}")
    annotators = annotators_of(batch["dataset"], sessions_of(exported.tasks), prodigy_conn_id)
    drawn = draw_round(
        batch["dataset"],
        batch["version"],
        qa_round,
        answers,
        max_error_rate=max_error_rate,
        confidence=confidence,
        max_rounds=max_rounds,
        annotators=annotators,
        size=size,
        fraction=fraction,
    )
    log.info(
        "%s: sampled %d of %d current answers (%d corrections from rework) in %d strata",
        drawn["business_key"],
        len(drawn["items"]),
        drawn["population"],
        len(exported.corrections),
        len(drawn["strata"]),
    )
    return drawn


def qa_request(qa_round: QARound) -> ProcessRequest:
    """What a round's process is started with: the sample reviewers judge, and the rule it is judged by."""
    return ProcessRequest(
        business_key=qa_round["business_key"],
        process_name=f"QA {qa_round['dataset']} {qa_round['version']} round {qa_round['round']}",
        variables={
            "dataset": qa_round["dataset"],
            "version": qa_round["version"],
            "rework_round": qa_round["round"],
            "max_rounds": qa_round["max_rounds"],
            "population": qa_round["population"],
            "max_error_rate": qa_round["max_error_rate"],
            "confidence": qa_round["confidence"],
            "sample": reviewer_view(qa_round),
            "qa_reasons": list(REASONS),
            "strata": qa_round["strata"],
        },
    )


def _process(opentext: OpenTextWorkflowHook, pid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The process as OpenText's history has it, and its variables."""
    (process,) = opentext.historic_processes(processInstanceId=pid, includeProcessVariables="true")
    return process, from_rest_variables(process.get("variables"))


def _annotated_by(qa_round: QARound, person: Any) -> bool:
    return same_person(str(person)) in {same_person(a) for a in qa_round["annotators"]}


def record_round(
    decision: Decision,
    opentext: OpenTextWorkflowHook,
    *,
    qa_round: QARound,
    audit_path: str | Path,
) -> ServiceTaskResult:
    """Airflow's step ``record_qa`` of a round: check the reviewer's judgements, record the figures on
    the process (variables and a comment) and in the audit log, and say what follows (``qa_result``).

    Who judged is the reviewer who completed ``qa_check`` (OpenText's task history); what they judged, the
    ``qa_judgements`` variable their form submitted. Judgements that do not fit the sample, or a reviewer
    who annotated the batch, send the round back to ``qa_check`` with ``review_problems`` saying what to
    fix, the judgements cleared; nothing is recorded then.
    """
    pid, reviewer = decision["process_instance_id"], decision["approver"]
    variables = from_rest_variables(opentext.decided_process(decision).get("variables"))
    shown = [str(item.get("item")) for item in variables.get("sample") or []]
    if shown != [item["item"] for item in qa_round["items"]]:
        raise QASampleChanged(
            f"{qa_round['business_key']}: the sample process {pid} shows is not the one the batch gives now "
            "(rework answers came in since the round opened): cancel the process and run the round again"
        )
    try:
        if _annotated_by(qa_round, reviewer):
            raise QAJudgementsInvalid(
                [f"{reviewer} annotated this batch and cannot judge it: another QA reviewer must"]
            )
        judged = parse_judgements(qa_round, variables.get(JUDGEMENTS_VARIABLE))
    except QAJudgementsInvalid as invalid:
        message = "Sent back: " + "; ".join(invalid.problems)
        log.warning("%s: %s", qa_round["business_key"], message)
        opentext.add_comment(pid, message)
        _audit(audit_path, qa_round, "qa_round_sent_back", pid, decision, problems=invalid.problems)
        return ServiceTaskResult(
            variables={JUDGEMENTS_VARIABLE: [], RESULT_VARIABLE: SENT_BACK, "review_problems": message},
            done=False,
            value=None,
        )
    figures = round_figures(qa_round, judged)
    result = round_result(figures, qa_round["max_rounds"])
    summary = f"{figures_summary(figures)}: {_what_follows(result, qa_round)}"
    log.info("%s: %s", qa_round["business_key"], summary)
    opentext.add_comment(pid, summary)
    _audit(audit_path, qa_round, "qa_round_recorded", pid, decision, figures=figures, result=result)
    return ServiceTaskResult(
        variables={
            RESULT_VARIABLE: result,
            FIGURES_VARIABLE: figures,
            REVIEWER_VARIABLE: reviewer,
            "review_problems": "",
            **NO_LEAD_OUTCOME,  # the leads' outcome is theirs: none planted before counts
        },
        done=True,
        value=result,
    )


def _what_follows(result: str, qa_round: QARound) -> str:
    if result == PASSED:
        return "the batch passes QA"
    if result == REWORK:
        return (
            "the failed answers go back to their annotators in "
            f"{rework_dataset(qa_round['dataset'], qa_round['version'], qa_round['round'])}, then round "
            f"{qa_round['round'] + 1}"
        )
    return f"round {qa_round['round']} of {qa_round['max_rounds']} failed: the annotation leads decide"


def _audit(
    audit_path: str | Path, qa_round: QARound, action: str, pid: str, decision: Decision, **details: Any
) -> None:
    record_in_audit_log(
        Path(audit_path),
        action,
        f"{qa_round['dataset']}@{qa_round['version']}",
        {
            "business_key": qa_round["business_key"],
            "process_instance_id": pid,
            "round": qa_round["round"],
            "reviewer": decision["approver"],
            **details,
        },
        event_key=f"{QA_PROCESS}:{pid}:{action}:{decision['task_id']}",
    )


def record_lead_decision(
    decision: Decision,
    opentext: OpenTextWorkflowHook,
    *,
    qa_round: QARound,
    audit_path: str | Path,
) -> ServiceTaskResult:
    """Airflow's step ``record_lead`` after every round failed: the lead's outcome (``accepted`` or
    ``rejected``) recorded in the audit log; a lead who annotated the batch, or another outcome, sends
    the decision back to the leads."""
    pid, lead, outcome = decision["process_instance_id"], decision["approver"], decision["outcome"]
    problem = None
    if _annotated_by(qa_round, lead):
        problem = f"{lead} annotated this batch and cannot decide on it: another annotation lead must"
    elif outcome not in LEAD_OUTCOMES:
        problem = f"outcome {outcome!r} is not one of {', '.join(LEAD_OUTCOMES)}"
    if problem:
        opentext.add_comment(pid, f"Sent back: {problem}")
        _audit(audit_path, qa_round, "qa_lead_sent_back", pid, decision, problems=[problem])
        return ServiceTaskResult(
            variables={
                "lead_result": SENT_BACK,
                "review_problems": f"Sent back: {problem}",
                **NO_LEAD_OUTCOME,
            },
            done=False,
            value=None,
        )
    _audit(audit_path, qa_round, "qa_lead_decided", pid, decision, outcome=outcome)
    log.info("%s: the annotation lead %s %s the batch", qa_round["business_key"], lead, outcome)
    return ServiceTaskResult(variables={"lead_result": outcome}, done=True, value=outcome)


def round_outcome(qa_round: QARound, process_instance_id: str, opentext: OpenTextWorkflowHook) -> QAOutcome:
    """How the round stands in OpenText: its end event (or, running, ``escalated`` to the leads), the
    recorded figures and reviewer. Read from the process, so a rerun sees what the first run recorded."""
    process, variables = _process(opentext, process_instance_id)
    ended_at = process.get("endActivityId")
    if process.get("endTime") and str(ended_at) not in ENDS:
        raise DatasetRefused(
            f"{qa_round['business_key']}: process {process_instance_id} ended "
            f"({process.get('deleteReason') or ended_at}) without a QA result: run the round again"
        )
    result = ENDS[str(ended_at)] if process.get("endTime") else variables.get(RESULT_VARIABLE)
    figures: QAFigures | None = variables.get(FIGURES_VARIABLE)
    return QAOutcome(
        dataset=qa_round["dataset"],
        version=qa_round["version"],
        round=qa_round["round"],
        business_key=qa_round["business_key"],
        process_instance_id=process_instance_id,
        result=str(result),
        reviewer=variables.get(REVIEWER_VARIABLE),
        figures=figures,
        lead_decision=variables.get("lead_result") if ended_at in LEAD_ENDS else None,
    )


def create_rework(
    batch: BatchToReview,
    qa_round: QARound,
    outcome: QAOutcome,
    work_root: Path,
    opentext: OpenTextWorkflowHook,
    *,
    scope: str,
    instructions: str,
    prodigy_conn_id: str = ProdigyHook.default_conn_name,
) -> ReworkBatch:
    """The failed round's rework dataset ``<dataset>_rework_<version>_r<round>`` and its task stream: the
    failed answers (``scope="stratum"``: every answer of each annotator/label pair with a failure), each with
    the instructions and the reviewer's reason and comment in its meta, served to the session that gave it.

    The same on reruns: the judgements are read back from the process, the stream rewritten whole, the
    dataset created once.
    """
    dataset, pid = batch["dataset"], outcome["process_instance_id"]
    _, variables = _process(opentext, pid)
    judged = parse_judgements(qa_round, variables.get(JUDGEMENTS_VARIABLE))
    exported = _exported(batch, work_root, qa_round["round"], prodigy_conn_id)
    answers = current_answers([*exported.tasks, *exported.corrections])
    tasks = [
        rework_task(
            answer,
            judgement,
            dataset=dataset,
            qa_round=qa_round["round"],
            instructions=instructions,
            process_instance_id=pid,
        )
        for answer, judgement in rework_answers(qa_round, judged, answers, scope)
    ]
    target = rework_dataset(dataset, batch["version"], qa_round["round"])
    stream = work_root / checked_name(dataset, "dataset") / checked_name(batch["version"], "version")
    stream = stream / f"{target}.jsonl"
    stream.parent.mkdir(parents=True, exist_ok=True)
    partial = stream.with_suffix(".jsonl.partial")
    partial.write_text("".join(dumps_compact(task) + "\n" for task in tasks))
    partial.replace(stream)
    sessions = sorted({str(task["meta"]["annotator"]) for task in tasks})
    hook = ProdigyHook(prodigy_conn_id)
    source_meta = hook.get_meta(dataset)
    meta = {
        "labels": source_meta.get("labels"),
        "rework_of": dataset,
        "version": batch["version"],
        "rework_round": qa_round["round"],
        "qa_process": pid,
        "instructions": instructions,
        "sessions": sessions,
        "stream": str(stream),
        "tasks": len(tasks),
    }
    if not hook.add_dataset(target, meta):
        hook.set_meta(target, meta)
    rework = ReworkBatch(
        dataset=target,
        source=dataset,
        version=batch["version"],
        round=qa_round["round"],
        stream_path=str(stream),
        tasks=len(tasks),
        sessions=sessions,
    )
    log.info(
        "%s: %d answer(s) go back to %s in %s (stream %s)",
        qa_round["business_key"],
        len(tasks),
        ", ".join(sessions),
        target,
        stream,
    )
    return rework


def qa_run(
    batch: BatchToReview, settings: dict[str, Any], request_approval: bool, qa_round: int = 1
) -> RunRequest:
    """The ``qa_rework`` run of one round of a batch, named by dataset, version and round."""
    dataset, version = batch["dataset"], batch["version"]
    return RunRequest(
        trigger_dag_id=QA_DAG,
        run_id=f"qa__{dataset}__{version}__r{qa_round}",
        conf={
            **settings,
            "dataset": dataset,
            "version": version,
            "round": qa_round,
            "request_approval": request_approval,
        },
        skip_reason=None,
    )


def next_round(batch: BatchToReview, params: dict[str, Any]) -> RunRequest:
    """The run of the round after this one, with the same settings."""
    settings = {
        k: v for k, v in params.items() if k not in ("dataset", "version", "round", "request_approval")
    }
    return qa_run(batch, settings, bool(params["request_approval"]), int(params["round"]) + 1)


def approval_after_qa(batch: BatchToReview, outcome: QAOutcome, request_approval: bool) -> RunRequest:
    """The batch-approval run a passed (or lead-accepted) batch starts, or why none starts."""
    run = approval_run(batch)
    reason = None
    if outcome["result"] != PASSED:
        reason = (
            f"{batch['dataset']}@{batch['version']} did not pass QA "
            f"({outcome['business_key']}: {outcome['result']})"
        )
    elif not request_approval:
        reason = f"request_approval is off: {batch['dataset']}@{batch['version']} is not sent to approval"
    return RunRequest(**{**run, "skip_reason": reason})
