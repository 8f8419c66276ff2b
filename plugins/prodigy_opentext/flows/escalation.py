"""The steps of label escalation (flow 2), as functions the DAG's tasks call.

DAG ``label_escalation`` (``dags/label_escalation.py``); process model
``include/bpmn/label_dispute_resolution.bpmn20.xml``; tests ``tests/flows/test_escalation.py``.

The items annotators did not settle (they disagree, ignored or flagged it, or its score is low) go to
senior reviewers in OpenText, a case of up to N items per process; past its due time the model hands a
case to the annotation leads. Each decision comes back into Prodigy as an adjudicated example in the
dataset's adjudication dataset, which batch approval and the release then count as the item's final
answer. Nobody adjudicates an item they annotated.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prodigy_opentext._opentext.variables import from_rest_variables
from prodigy_opentext.core.approvals import person_of, same_person
from prodigy_opentext.core.escalation import (
    DECISIONS_VARIABLE,
    ESCALATION_PROCESS,
    adjudicated_example,
    adjudication_dataset,
    case_items,
    cases_of,
    parse_decisions,
    reviewer_view,
)
from prodigy_opentext.core.payloads import (
    BatchToReview,
    CaseOutcome,
    Decision,
    EscalationCase,
    ProcessRequest,
    RunRequest,
    ServiceTaskResult,
)
from prodigy_opentext.exceptions import AdjudicationInvalid
from prodigy_opentext.flows._approvals import annotators_of, qa_settings
from prodigy_opentext.flows._shared import StreamedBatch, checked_name, record_in_audit_log
from prodigy_opentext.flows.batch_approval import approval_run
from prodigy_opentext.flows.qa import qa_run
from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook
from prodigy_opentext.hooks.prodigy import ProdigyHook

log = logging.getLogger(__name__)


def find_cases(
    batch: BatchToReview,
    work_root: Path,
    *,
    min_score: float | None,
    include_ignored: bool,
    include_flagged: bool,
    per_case: int,
    prodigy_conn_id: str = ProdigyHook.default_conn_name,
) -> list[EscalationCase]:
    """The batch's unsettled items, in cases of up to ``per_case``; items already adjudicated are settled.

    Every session must name its person (the dataset meta ``annotator_emails``), so nobody is later asked
    to adjudicate what they annotated; a session naming nobody fails here, before anyone is asked.
    """
    dataset, version = batch["dataset"], batch["version"]
    folder = work_root / checked_name(dataset, "dataset") / checked_name(version, "version") / "escalation"
    streamed = StreamedBatch(dataset, batch["last_example_id"], folder, prodigy_conn_id, min_score=min_score)
    disputes = streamed.open_disputes()
    annotators_of(dataset, sorted(streamed.sessions), prodigy_conn_id)
    items = case_items(disputes, include_ignored=include_ignored, include_flagged=include_flagged)
    cases = cases_of(dataset, version, items, per_case)
    counts = streamed.merger.counts()
    log.info(
        "%s@%s: %d of %d items need a reviewer (%d already adjudicated), in %d case(s) of up to %d",
        dataset,
        version,
        len(items),
        counts["merged"] + counts["disputes"],
        counts["resolved"],
        len(cases),
        per_case,
    )
    return cases


def escalation_run(batch: BatchToReview) -> RunRequest:
    """The escalation run of one ready batch, named by dataset and version (one however often the batch is
    found ready); it requests the batch's approval once its items are settled."""
    dataset, version = batch["dataset"], batch["version"]
    return RunRequest(
        trigger_dag_id="label_escalation",
        run_id=f"escalation__{dataset}__{version}",
        conf={"dataset": dataset, "version": version, "request_approval": True},
        skip_reason=None,
    )


def after_escalation(
    batch: BatchToReview, request_approval: bool, prodigy_conn_id: str = ProdigyHook.default_conn_name
) -> RunRequest:
    """The run an escalation run starts once its cases are settled, or why it starts none: the batch's
    first QA round when its dataset's meta asks for QA (``qa_review``: the QA settings), else its
    approval."""
    settings = qa_settings(batch["dataset"], ProdigyHook(prodigy_conn_id).get_meta(batch["dataset"]))
    run = approval_run(batch) if settings is None else qa_run(batch, settings, request_approval)
    if request_approval:
        return run
    reason = f"request_approval is off: {batch['dataset']}@{batch['version']} goes no further"
    return RunRequest(**{**run, "skip_reason": reason})


def case_request(case: EscalationCase, escalation_after: str) -> ProcessRequest:
    """What a case's process is started with: the items reviewers decide, and when it escalates."""
    return ProcessRequest(
        business_key=case["business_key"],
        process_name=f"Disputed labels {case['dataset']} {case['version']} case {case['number']}",
        variables={
            "dataset": case["dataset"],
            "version": case["version"],
            "case": case["number"],
            "items": len(case["items"]),
            "examples": reviewer_view(case),
            "escalation_after": escalation_after,
        },
    )


def check_and_write(
    decision: Decision,
    opentext: OpenTextWorkflowHook,
    *,
    case: EscalationCase,
    audit_path: str | Path,
    prodigy_conn_id: str = ProdigyHook.default_conn_name,
) -> ServiceTaskResult:
    """Airflow's step ``check_decisions`` of a case: check the reviewers' decisions, then write them into
    the adjudication dataset, once (by task hash), or send the case back.

    Who decided is the reviewer who completed the review (OpenText's task history: ``decision``); what
    they decided, the ``adjudications`` variable their form submitted. Decisions that do not fit the case
    (no decision, an item not in the case or left out, a version the item does not have), or a reviewer
    who annotated one of the items, send the case back to the review it came from with
    ``review_problems`` and a comment saying what to fix, and clear the submitted decisions so nobody's
    are taken for the next reviewer's; nothing is written to Prodigy then.
    """
    dataset, pid, reviewer = case["dataset"], decision["process_instance_id"], decision["approver"]
    prodigy = ProdigyHook(prodigy_conn_id)
    meta = prodigy.get_meta(dataset)
    process = opentext.decided_process(decision)
    try:
        decided = parse_decisions(case, from_rest_variables(process.get("variables")).get(DECISIONS_VARIABLE))
        own = [
            item["item"]
            for item in case["items"]
            if same_person(str(reviewer))
            in {person_of(dataset, s, meta) for v in item["versions"] for s in v["sessions"]}
        ]
        if own:
            raise AdjudicationInvalid(
                [
                    f"{reviewer} annotated item(s) {', '.join(own)} and cannot adjudicate this case: "
                    "another member of the group must decide it"
                ]
            )
    except AdjudicationInvalid as invalid:
        return _send_back(case, decision, invalid.problems, opentext, Path(audit_path))
    target = adjudication_dataset(dataset, meta)
    session = f"{target}-adjudication"
    examples = [
        adjudicated_example(
            item,
            decided[item["item"]],
            reviewer=str(reviewer),
            decided_at=decision["decided_at"],
            process_instance_id=pid,
            session=session,
        )
        for item in case["items"]
    ]
    stored = prodigy.add_examples(target, examples, session=session)
    outcome = CaseOutcome(
        business_key=case["business_key"],
        process_instance_id=pid,
        reviewer=reviewer,
        adjudicated=len(examples),
    )
    record_in_audit_log(
        Path(audit_path),
        "case_adjudicated",
        f"{dataset}@{case['version']}",
        {
            **outcome,
            "adjudication_dataset": target,
            "decisions": {k: v["decision"] for k, v in decided.items()},
        },
        event_key=f"{ESCALATION_PROCESS}:{pid}:adjudicated",
    )
    log.info(
        "case %s: %d adjudicated example(s) in %s by %s (%s)",
        case["business_key"],
        len(examples),
        target,
        reviewer,
        stored,
    )
    return ServiceTaskResult(variables={"decisions_accepted": True}, done=True, value=outcome)


def _send_back(
    case: EscalationCase,
    decision: Decision,
    problems: list[str],
    opentext: OpenTextWorkflowHook,
    audit_path: Path,
) -> ServiceTaskResult:
    pid = decision["process_instance_id"]
    message = "Sent back: " + "; ".join(problems)
    log.warning("case %s: %s", case["business_key"], message)
    opentext.add_comment(pid, message)
    record_in_audit_log(
        audit_path,
        "case_sent_back",
        f"{case['dataset']}@{case['version']}",
        {
            "business_key": case["business_key"],
            "process_instance_id": pid,
            "reviewer": decision["approver"],
            "problems": problems,
        },
        event_key=f"{ESCALATION_PROCESS}:{pid}:sent_back:{decision['task_id']}",
    )
    variables = {
        DECISIONS_VARIABLE: [],  # the next review submits its own: nothing of this one is taken as theirs
        "decisions_accepted": False,
        "return_to": decision["task_definition_key"] or "senior_review",
        "review_problems": message,
    }
    return ServiceTaskResult(variables=variables, done=False, value=None)
