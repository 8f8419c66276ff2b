"""QA of an annotation batch (flow 6): a seeded, stratified sample of its answers judged pass or fail,
the verdict from a confidence bound on the error rate, and rework for the answers that failed.

Plain Python (no Airflow import). What QA judges is each annotator's current answer to each item (their
latest, so a round after rework sees the corrections), ``ignore`` answers left out (they label nothing).
A round passes when the one-sided Clopper-Pearson upper bound of its error rate, at ``confidence``, is
within ``max_error_rate`` (a sample of the whole batch: the error rate itself); otherwise its failed
answers (or every answer of the annotator/label pairs that failed) go back to their annotators as a
rework dataset ``<dataset>_rework_<version>_r<round>``, and after ``max_rounds`` failed rounds to the
leads. The corrections from rework replace the annotator's earlier answers: they are that annotator's
latest.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prodigy_opentext.core.agreement import item_key, latest_by_annotator
from prodigy_opentext.core.escalation import item_id
from prodigy_opentext.core.payloads import QAFigures, QAItem, QAJudgement, QARound
from prodigy_opentext.core.records import annotator_of, session_name_in
from prodigy_opentext.core.sampling import qa_sample, stratum_of
from prodigy_opentext.core.submissions import PerItemForm, per_item_entries
from prodigy_opentext.exceptions import QAJudgementsInvalid

QA_PROCESS = "qa_review"
"""The process (``include/bpmn``) one QA round is judged in."""
CHECK_STEP = "record_qa"
"""Airflow's own step of the model: check the judgements, record the round's figures, say what follows."""
JUDGEMENTS_VARIABLE = "qa_judgements"
"""The process variable the QA form submits: one judgement per sampled answer."""
RESULT_VARIABLE = "qa_result"
"""What ``record_qa`` decided: ``passed``, ``rework``, ``escalated``, or ``sent_back`` to the reviewer."""
FIGURES_VARIABLE = "qa_figures"
REVIEWER_VARIABLE = "qa_reviewer"
PASSED, REWORK, ESCALATED, REJECTED, SENT_BACK = "passed", "rework", "escalated", "rejected", "sent_back"
ENDS = {
    "end_passed": PASSED,
    "end_rework": REWORK,
    "end_lead_accepted": PASSED,
    "end_lead_rejected": REJECTED,
}
"""The model's end events and what each means for the batch."""
LEAD_ENDS = ("end_lead_accepted", "end_lead_rejected")
LEAD_REVIEW = "lead_review"
"""The leads' task after the last round failed."""
LEAD_OUTCOMES = ("accepted", "rejected")
"""What the leads may decide (the model's ``possibleOutcomes`` of ``lead_review``)."""
SETTINGS = (
    "max_error_rate",
    "confidence",
    "sample_size",
    "sample_fraction",
    "max_rounds",
    "rework_scope",
    "instructions",
)
"""What a dataset's ``qa_review`` meta may set: the QA DAG's params."""
VERDICTS = ("pass", "fail")
REASONS = ("wrong_label", "missed_span", "extra_span", "span_boundary", "wrong_answer", "guidelines", "other")
"""Why an answer failed QA, as the form offers it."""
BOUND_TOLERANCE = 1e-9
"""How far above the threshold a computed bound may lie and still meet it (the bisection's rounding: the
sample :func:`sample_size` asks for must pass with no failure)."""
SCOPES = ("failed", "stratum")
"""What goes to rework: the failed answers, or every answer of each annotator/label pair with a failure."""
SAME_STRATUM = "same annotator and label as a failed answer"
CONTENT_FIELDS = ("text", "tokens", "spans", "label", "options", "accept", "image", "html", "relations")
"""What a rework task keeps of the answer it asks to redo (its hashes and meta too)."""


def rework_dataset(dataset: str, version: str, qa_round: int) -> str:
    """The Prodigy dataset a round's rework is answered in: one per version and round (versions are
    cumulative, so a name per round alone would mix one version's rework with the next one's)."""
    return f"{dataset}_rework_{version}_r{qa_round}"


def qa_business_key(dataset: str, version: str, qa_round: int) -> str:
    return f"{QA_PROCESS}:{dataset}:{version}:r{qa_round}"


def current_answers(tasks: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each annotator's latest answer to each item, ignores left out, in a stable order."""
    by_item: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for task in tasks:
        if not task.get("_adjudicated"):
            by_item[item_key(task)].append(task)
    answers = [
        dict(task)
        for versions in by_item.values()
        for task in latest_by_annotator(versions).values()
        if task.get("answer") != "ignore"
    ]
    return sorted(
        answers, key=lambda t: (str(t.get("_input_hash")), str(t.get("label")), annotator_of(t) or "")
    )


def answer_id(task: Mapping[str, Any]) -> str:
    """A sampled answer's id in the round: its item and the session that gave it."""
    return f"{item_id(task.get('_input_hash'), task.get('label'))}@{annotator_of(task)}"


def stratum_name(task: Mapping[str, Any]) -> str:
    label, annotator = stratum_of(task)
    return f"{label}|{annotator}"


def upper_bound(failed: int, sampled: int, confidence: float) -> float:
    """The one-sided Clopper-Pearson upper bound of an error rate: the largest rate under which seeing
    ``failed`` or fewer failures in ``sampled`` still has probability ``1 - confidence``."""
    if sampled <= 0 or failed >= sampled:
        return 1.0
    alpha = 1.0 - confidence
    low, high = failed / sampled, 1.0
    for _ in range(80):
        middle = (low + high) / 2
        low, high = (middle, high) if _binomial_cdf(failed, sampled, middle) > alpha else (low, middle)
    return high


def _binomial_cdf(k: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0 if k < n else 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    total = math.lgamma(n + 1)
    return sum(
        math.exp(total - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q)
        for i in range(k + 1)
    )


def sample_size(population: int, max_error_rate: float, confidence: float) -> int:
    """The smallest sample that can pass: with no failure its upper bound is within ``max_error_rate``
    (29 answers for 10 % at 95 %), or the whole batch when that is smaller."""
    if not 0 < max_error_rate < 1:
        raise ValueError(f"max_error_rate must be between 0 and 1 (exclusive), not {max_error_rate}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), not {confidence}")
    needed = math.ceil(math.log(1.0 - confidence) / math.log(1.0 - max_error_rate))
    return min(population, needed)


def sample_problem(
    population: int, size: int | None, fraction: float | None, max_error_rate: float, confidence: float
) -> str | None:
    """Why a round asked for cannot be judged (None when it can): nothing to sample, or a sample too small
    to pass even with no failure."""
    if population == 0:
        return "there is no answer to sample (none, or every answer is ignore)"
    smallest = sample_size(population, max_error_rate, confidence)
    wanted = (
        size if size is not None else math.ceil(fraction * population) if fraction is not None else smallest
    )
    if min(wanted, population) < smallest:
        return (
            f"a sample of {wanted} answers cannot pass even with no failure: at {confidence:.0%} confidence "
            f"and {max_error_rate:.1%} allowed it needs at least {smallest} (or the whole batch): raise "
            "sample_size"
        )
    return None


def draw_round(
    dataset: str,
    version: str,
    qa_round: int,
    answers: Sequence[Mapping[str, Any]],
    *,
    max_error_rate: float,
    confidence: float,
    max_rounds: int,
    annotators: Sequence[str] = (),
    size: int | None = None,
    fraction: float | None = None,
) -> QARound:
    """Round ``qa_round``'s sample of the batch's current answers: ``size`` answers, a ``fraction`` of
    them, or (neither given) :func:`sample_size`; seeded by dataset, version and round."""
    if qa_round < 1 or max_rounds < 1:
        raise ValueError(f"round and max_rounds must be at least 1, got {qa_round} and {max_rounds}")
    if size is None and fraction is None:
        size = sample_size(len(answers), max_error_rate, confidence)
    key = qa_business_key(dataset, version, qa_round)
    sample = qa_sample(answers, seed=key, size=size, fraction=fraction)
    return QARound(
        dataset=dataset,
        version=version,
        round=qa_round,
        max_rounds=max_rounds,
        business_key=key,
        population=len(answers),
        strata=sample.strata,
        max_error_rate=max_error_rate,
        confidence=confidence,
        annotators=list(annotators),
        items=[_qa_item(task) for task in sample.tasks],
    )


def _qa_item(task: Mapping[str, Any]) -> QAItem:
    return QAItem(
        item=answer_id(task),
        input_hash=task.get("_input_hash"),
        label=task.get("label"),
        text=str(task.get("text") or ""),
        annotator=str(annotator_of(task)),
        stratum=stratum_name(task),
        answer=task.get("answer"),
        spans=list(task.get("spans") or []),
        accept=list(task.get("accept") or []),
        task=dict(task),
    )


def reviewer_view(qa_round: QARound) -> list[dict[str, Any]]:
    """What the round's process carries for QA reviewers: each sampled answer, without the stored task."""
    return [{k: v for k, v in item.items() if k != "task"} for item in qa_round["items"]]


JUDGEMENTS_FORM = PerItemForm(
    variable=JUDGEMENTS_VARIABLE,
    entry="judgement",
    subject="answer",
    shown_in="this sample",
    twice="judged twice",
    missing="has no verdict",
    error=QAJudgementsInvalid,
)


def parse_judgements(qa_round: QARound, submitted: Any) -> dict[str, QAJudgement]:
    """The reviewer's judgements by sampled answer, checked against the round; :class:`QAJudgementsInvalid`
    names every problem (none submitted, an answer not in the sample, left out or judged twice, a verdict
    other than pass/fail, a failure without a reason from :data:`REASONS`, ``other`` without a comment)."""
    judged = per_item_entries(
        JUDGEMENTS_FORM,
        submitted,
        [item["item"] for item in qa_round["items"]],
        lambda _key, entry: _judgement_problem(entry),
    )
    return {
        key: QAJudgement(
            item=key,
            verdict=str(entry["verdict"]),
            reason=str(entry["reason"]) if entry["verdict"] == "fail" else None,
            comment=str(entry.get("comment") or "").strip(),
        )
        for key, entry in judged.items()
    }


def _judgement_problem(entry: Mapping[str, Any]) -> str | None:
    verdict = entry.get("verdict")
    if verdict not in VERDICTS:
        return f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}"
    if verdict == "fail" and entry.get("reason") not in REASONS:
        return f"a failure needs a reason, one of {', '.join(REASONS)} (got {entry.get('reason')!r})"
    if verdict == "fail" and entry.get("reason") == "other" and not str(entry.get("comment") or "").strip():
        return "reason 'other' needs a comment saying what is wrong"
    return None


def round_figures(qa_round: QARound, judged: Mapping[str, QAJudgement]) -> QAFigures:
    """What the round found: failures overall, by reason and by stratum, the error rate and its upper
    bound against the threshold, and whether the batch passes."""
    strata_of = {item["item"]: item["stratum"] for item in qa_round["items"]}
    sampled = len(judged)
    failed = [j for j in judged.values() if j["verdict"] == "fail"]
    by_stratum: dict[str, dict[str, int]] = {}
    for key, judgement in sorted(judged.items()):
        counts = by_stratum.setdefault(strata_of[key], {"sampled": 0, "failed": 0})
        counts["sampled"] += 1
        counts["failed"] += judgement["verdict"] == "fail"
    rate = len(failed) / sampled if sampled else 0.0
    whole = sampled >= qa_round["population"]
    bound = rate if whole else upper_bound(len(failed), sampled, qa_round["confidence"])
    return QAFigures(
        round=qa_round["round"],
        population=qa_round["population"],
        sampled=sampled,
        failed=len(failed),
        error_rate=round(rate, 4),
        upper_bound=round(bound, 4),
        max_error_rate=qa_round["max_error_rate"],
        confidence=qa_round["confidence"],
        passed=bound <= qa_round["max_error_rate"] + BOUND_TOLERANCE,
        by_reason=dict(sorted(Counter(str(j["reason"]) for j in failed).items())),
        by_stratum=by_stratum,
    )


def round_result(figures: QAFigures, max_rounds: int) -> str:
    """What follows a round: the batch passed, its failures go to rework, or (the last round failed)
    the leads decide."""
    if figures["passed"]:
        return PASSED
    return REWORK if figures["round"] < max_rounds else ESCALATED


def figures_summary(figures: QAFigures) -> str:
    """The round's figures in a sentence (the process comment and the log)."""
    verdict = "passed" if figures["passed"] else "failed"
    return (
        f"QA round {figures['round']} {verdict}: {figures['failed']} of {figures['sampled']} sampled answers "
        f"(of {figures['population']}) failed, error rate {figures['error_rate']:.1%}, upper bound "
        f"{figures['upper_bound']:.1%} at {figures['confidence']:.0%} confidence against "
        f"{figures['max_error_rate']:.1%} allowed"
    )


def rework_answers(
    qa_round: QARound,
    judged: Mapping[str, QAJudgement],
    answers: Iterable[Mapping[str, Any]],
    scope: str,
) -> list[tuple[dict[str, Any], QAJudgement | None]]:
    """The answers a failed round sends back, each with its judgement (None: reworked because its
    annotator/label pair failed): the failed ones, or (``scope="stratum"``) every current answer of a
    stratum with a failure."""
    if scope not in SCOPES:
        raise ValueError(f"rework scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    failed = {item["item"]: item for item in qa_round["items"] if judged[item["item"]]["verdict"] == "fail"}
    chosen: list[tuple[dict[str, Any], QAJudgement | None]] = [
        (dict(item["task"]), judged[key]) for key, item in failed.items()
    ]
    if scope == "stratum":
        strata = {item["stratum"] for item in failed.values()}
        chosen += [
            (dict(task), None)
            for task in answers
            if stratum_name(task) in strata and answer_id(task) not in failed
        ]
    return chosen


def rework_task(
    answer: Mapping[str, Any],
    judgement: QAJudgement | None,
    *,
    dataset: str,
    qa_round: int,
    instructions: str,
    process_instance_id: str,
) -> dict[str, Any]:
    """The Prodigy task an answer goes back as: its content (spans and choices as the annotator gave them,
    to correct), its hashes, and flat ``meta`` Prodigy shows on the card: the instructions, the reviewer's
    reason and comment, and whose answer it replaces (``annotator``: the session name it is served to)."""
    session = str(annotator_of(answer))
    task = {field: answer[field] for field in CONTENT_FIELDS if field in answer}
    task.update(_input_hash=answer.get("_input_hash"), _task_hash=answer.get("_task_hash"))
    meta = {k: v for k, v in (answer.get("meta") or {}).items() if not str(k).startswith("qa_")}
    meta.update(
        rework_round=qa_round,
        instructions=instructions,
        previous_answer=answer.get("answer"),
        qa_reason=judgement["reason"] if judgement else SAME_STRATUM,
        qa_comment=(judgement["comment"] if judgement else "") or "",
        annotator=session_name_in(dataset, session),
        rework_of=session,
        qa_process=process_instance_id,
    )
    task["meta"] = meta
    return task


def correction_of(answer: Mapping[str, Any], rework: str) -> dict[str, Any] | None:
    """An answer of the rework dataset ``rework`` as its annotator's new answer to the item (the session it
    replaces named in ``meta.rework_of``; the rework session kept as ``_session_id``), or None when it is
    not one: no rework task, skipped (``ignore``), or given by another session than the one the task was
    for (``meta.annotator``), whose answer cannot count as theirs."""
    meta = answer.get("meta") or {}
    replaces = meta.get("rework_of") if isinstance(meta, Mapping) else None
    if not replaces or answer.get("answer") not in ("accept", "reject"):
        return None
    if answer.get("_session_id") != f"{rework}-{meta.get('annotator')}":
        return None
    return {**answer, "_annotator_id": str(replaces)}


def reworks_in(corrections: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The QA rework behind a release's answers (for its manifest): which answer was redone, in which
    round and process, why, by which rework session, and the answer it became."""
    found = []
    for correction in corrections:
        meta = correction.get("meta") or {}
        found.append(
            {
                "item": answer_id(correction),
                "round": meta.get("rework_round"),
                "qa_process": meta.get("qa_process"),
                "reason": meta.get("qa_reason"),
                "session": correction.get("_session_id"),
                "answer": correction.get("answer"),
            }
        )
    return sorted(found, key=lambda entry: (entry["item"], str(entry["round"])))
