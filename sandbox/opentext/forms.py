"""Task forms, chosen by a task's ``formKey`` as OpenText chooses a form: what a reviewer needs from the
process variables, shown as tables and choices (never raw JSON), and what the form submits as process
variables when the reviewer completes the task.

``label-dispute-review`` (the ``label_dispute_resolution`` model's reviews): one fieldset per item of the
case (``#item-<n>``) with its text (spans marked), reasons and agreement, and one radio button per version
(``#choice-<n>-<version>``) and to reject the item (``#choice-<n>-rejected``); submitted as the json
variable ``adjudications``. Why the case came back (``review_problems``) shows above the items.

``qa-sample-check`` (the ``qa_review`` model's QA check): the rule and the sample's strata as a table,
then one fieldset per sampled answer (``#qa-item-<n>``) with its text (spans marked), label, annotator and
answer, radio buttons ``#verdict-<n>-pass`` / ``#verdict-<n>-fail``, a reason (``#reason-<n>``, the
choices of the variable ``qa_reasons``) and a comment (``#comment-<n>``); submitted as the json variable
``qa_judgements``. A failure needs a reason.

``qa-lead-review`` (the leads' decision after the last QA round failed): the round's figures
(``qa_figures``) as tables (``#qa-figures``, ``#qa-strata``) and the failed answers with their reasons and
comments (``#qa-failures``), with the task's outcome buttons.

``regulated-access-approval`` (the ``regulated_content_access`` model's access approval): the held
content's classification, task count and sha256 (``#access-case``; never the content), one checkbox per
proposed annotator (``#allow-<n>``) and a field for others (``#other-annotators``), with the task's
outcome buttons; submitted as the json variable ``allowed_annotators``, local to the task (its history
keeps it). A grant needs an annotator.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from sandbox.opentext.readable import readable

DISPUTE_FORM = "label-dispute-review"
QA_FORM = "qa-sample-check"
QA_LEAD_FORM = "qa-lead-review"
ACCESS_FORM = "regulated-access-approval"
SHOWN_BY_FORM = {
    DISPUTE_FORM: frozenset({"examples", "review_problems", "adjudications"}),
    QA_FORM: frozenset({"sample", "strata", "review_problems", "qa_judgements", "qa_reasons"}),
    QA_LEAD_FORM: frozenset(
        {"sample", "strata", "qa_judgements", "qa_reasons", "qa_figures", "review_problems"}
    ),
    ACCESS_FORM: frozenset({"annotators", "allowed_annotators"}),
}
"""Variables a form presents itself, left out of the task page's variable table."""


def _marked(text: str, spans: list[Mapping[str, Any]]) -> str:
    """The text with each span marked and labelled, for reading a version at a glance."""
    parts, at = [], 0
    for span in sorted(spans, key=lambda s: (s.get("start", 0), s.get("end", 0))):
        start, end = int(span.get("start", 0)), int(span.get("end", 0))
        if start < at or end > len(text):
            continue
        parts.append(escape(text[at:start]))
        parts.append(f'<mark title="{escape(str(span.get("label")))}">{escape(text[start:end])}</mark>')
        parts.append(f'<sup class="span-label">{escape(str(span.get("label")))}</sup>')
        at = end
    parts.append(escape(text[at:]))
    return "".join(parts)


def _version_label(item: Mapping[str, Any], version: Mapping[str, Any]) -> str:
    answer = f"answer <strong>{escape(str(version.get('answer')))}</strong>"
    spans = version.get("spans") or []
    shown = f": {_marked(str(item.get('text') or ''), spans)}" if spans else ""
    accepted = f", accepted {escape(', '.join(map(str, version['accept'])))}" if version.get("accept") else ""
    given = ", ".join(escape(str(s)) for s in version.get("sessions") or [])
    return f"{escape(str(version['version']))}: {answer}{accepted}{shown} <em>(given by {given})</em>"


def _problems(values: Mapping[str, Any]) -> str:
    """Why the task came back to the reviewer, above the form."""
    problems = values.get("review_problems")
    return f'<div id="review-problems" class="error">{readable(problems)}</div>' if problems else ""


def _dispute_fields(values: Mapping[str, Any]) -> str:
    items = values.get("examples") or []
    parts = [_problems(values)]
    parts.append(
        f'<p id="case-summary">{len(items)} item(s) to decide: take one version, or reject the item.</p>'
    )
    for number, item in enumerate(items, start=1):
        label = f" (label {escape(str(item['label']))})" if item.get("label") else ""
        choices = "".join(
            f'<label class="choice"><input type="radio" id="choice-{number}-{escape(str(v["version"]))}" '
            f'name="choice-{number}" value="{escape(str(v["version"]))}"> {_version_label(item, v)}</label>'
            for v in item.get("versions") or []
        )
        choices += (
            f'<label class="choice"><input type="radio" id="choice-{number}-rejected" name="choice-{number}" '
            'value="rejected"> reject the item</label>'
        )
        parts.append(
            f'<fieldset id="item-{number}" data-item="{escape(str(item["item"]))}">'
            f"<legend>Item {number}{label}: {escape(', '.join(item.get('reasons') or []))}, agreement "
            f"{float(item.get('agreement') or 0):.0%}</legend>"
            f'<blockquote class="text">{escape(str(item.get("text") or ""))}</blockquote>{choices}</fieldset>'
        )
    return "".join(parts)


def _percent(value: Any) -> str:
    return f"{float(value or 0):.1%}"


def _table(table_id: str, header: list[str], rows: list[list[str]]) -> str:
    """A table of already escaped cells."""
    head = "".join(f"<th>{cell}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _strata_table(table_id: str, strata: Mapping[str, Mapping[str, Any]], columns: tuple[str, ...]) -> str:
    rows = []
    for stratum, counts in strata.items():
        label, _, annotator = str(stratum).rpartition("|")
        shown = "(no label)" if label == "None" else label
        rows.append([escape(shown), escape(annotator), *(escape(str(counts.get(c, 0))) for c in columns)])
    return _table(table_id, ["Label", "Annotator", *(c.capitalize() for c in columns)], rows)


def _readable(reason: str) -> str:
    return reason.replace("_", " ")


def _qa_fields(values: Mapping[str, Any]) -> str:
    sample = values.get("sample") or []
    reasons = values.get("qa_reasons") or []
    parts = [
        _problems(values),
        f'<p id="qa-rule">Round {escape(str(values.get("rework_round")))}: {len(sample)} of '
        f"{escape(str(values.get('population')))} answers sampled. The batch passes when the error rate's "
        f"upper bound at {_percent(values.get('confidence'))} confidence is within "
        f"{_percent(values.get('max_error_rate'))}. Pass each answer, or fail it with a reason and a comment "
        "for the annotator.</p>",
        _strata_table("qa-sample-strata", values.get("strata") or {}, ("population", "sampled")),
    ]
    options = '<option value="">reason…</option>' + "".join(
        f'<option value="{escape(str(r))}">{escape(_readable(str(r)))}</option>' for r in reasons
    )
    for number, item in enumerate(sample, start=1):
        answer = f"answer <strong>{escape(str(item.get('answer')))}</strong>"
        label = f", label <strong>{escape(str(item['label']))}</strong>" if item.get("label") else ""
        accepted = f", accepted {escape(', '.join(map(str, item['accept'])))}" if item.get("accept") else ""
        verdicts = "".join(
            f'<label class="choice"><input type="radio" id="verdict-{number}-{v}" name="verdict-{number}" '
            f'value="{v}"> {v}</label>'
            for v in ("pass", "fail")
        )
        parts.append(
            f'<fieldset id="qa-item-{number}" data-item="{escape(str(item["item"]))}">'
            f"<legend>Answer {number} by {escape(str(item.get('annotator')))}: {answer}{label}{accepted}"
            "</legend>"
            f'<blockquote class="text">{_marked(str(item.get("text") or ""), item.get("spans") or [])}'
            f"</blockquote>{verdicts}"
            f'<select id="reason-{number}" name="reason-{number}">{options}</select>'
            f'<textarea id="comment-{number}" name="comment-{number}" '
            'placeholder="comment for the annotator"></textarea></fieldset>'
        )
    return "".join(parts)


def _lead_fields(values: Mapping[str, Any]) -> str:
    figures = values.get("qa_figures") or {}
    rows = [
        ["Round", f"{escape(str(figures.get('round')))} of {escape(str(values.get('max_rounds')))}"],
        [
            "Answers sampled",
            f"{escape(str(figures.get('sampled')))} of {escape(str(figures.get('population')))}",
        ],
        ["Failed", escape(str(figures.get("failed")))],
        ["Error rate", _percent(figures.get("error_rate"))],
        [
            "Upper bound",
            f"{_percent(figures.get('upper_bound'))} at {_percent(figures.get('confidence'))} confidence",
        ],
        ["Allowed", _percent(figures.get("max_error_rate"))],
        *[
            [f"Failed: {escape(_readable(str(reason)))}", escape(str(n))]
            for reason, n in (figures.get("by_reason") or {}).items()
        ],
    ]
    sampled = {str(item.get("item")): item for item in values.get("sample") or []}
    failures = [
        [
            escape(str(sampled.get(str(j.get("item")), {}).get("annotator", ""))),
            _marked(
                str(sampled.get(str(j.get("item")), {}).get("text") or ""),
                sampled.get(str(j.get("item")), {}).get("spans") or [],
            ),
            escape(_readable(str(j.get("reason")))),
            escape(str(j.get("comment") or "")),
        ]
        for j in values.get("qa_judgements") or []
        if isinstance(j, Mapping) and j.get("verdict") == "fail"
    ]
    return (
        _problems(values)
        + '<p id="qa-lead-summary">Every QA round of this batch failed. Accept it as it is, or reject it.</p>'
        + _table("qa-figures", ["Figure", "Value"], rows)
        + _strata_table("qa-strata", figures.get("by_stratum") or {}, ("sampled", "failed"))
        + _table("qa-failures", ["Annotator", "Answer", "Reason", "Comment"], failures)
    )


def _proposed(values: Mapping[str, Any]) -> list[str]:
    named = values.get("annotators") or []
    return [str(a).strip() for a in (named.split(",") if isinstance(named, str) else named) if str(a).strip()]


def _access_fields(values: Mapping[str, Any]) -> str:
    rows = [
        [escape(name), readable(values.get(key))]
        for name, key in (
            ("Title", "title"),
            ("Classification", "classification"),
            ("Dataset", "dataset"),
            ("Tasks held", "tasks"),
            ("Content sha256", "content_sha256"),
            ("Labels", "labels"),
            ("Annotations per task", "annotations_per_task"),
        )
    ]
    boxes = "".join(
        f'<label class="choice"><input type="checkbox" id="allow-{number}" name="allow-{number}" '
        f'value="{escape(email)}"> {escape(email)}</label>'
        for number, email in enumerate(_proposed(values), start=1)
    )
    return (
        '<p id="access-summary">The content waits in Airflow\'s holding area; nobody can read it in Prodigy '
        "until access is granted, and then only the annotators ticked here.</p>"
        + _table("access-case", ["Case", "Value"], rows)
        + f'<fieldset id="allowed-annotators"><legend>Annotators allowed to see the content</legend>{boxes}'
        '<label for="other-annotators">Others (e-mails, comma-separated)</label>'
        '<input id="other-annotators" name="other-annotators"></fieldset>'
    )


SUBMIT_BUTTON = (
    '<button id="submit-decisions" type="submit" name="action" value="decide">Submit decisions</button>'
)
FIELDS = {
    DISPUTE_FORM: _dispute_fields,
    QA_FORM: _qa_fields,
    QA_LEAD_FORM: _lead_fields,
    ACCESS_FORM: _access_fields,
}
SUBMITTING_FORMS = frozenset({DISPUTE_FORM, QA_FORM})
"""Forms whose fields are the decision (sent with :data:`SUBMIT_BUTTON`); the others show what the
reviewer decides on, beside the task's outcome buttons."""


def form_fields(form_key: str | None, values: Mapping[str, Any]) -> str | None:
    """The form's fields for a task, or None when the task has no form of its own (outcome buttons)."""
    fields = FIELDS.get(form_key or "")
    return fields(values) if fields else None


def _dispute_submission(
    values: Mapping[str, Any], form: Mapping[str, str]
) -> tuple[list[dict[str, Any]], list[str]]:
    decisions, missing = [], []
    for number, item in enumerate(values.get("examples") or [], start=1):
        choice = form.get(f"choice-{number}")
        if not choice:
            missing.append(f"item {number} has no decision: take one of its versions or reject it")
        elif choice == "rejected":
            decisions.append({"item": item["item"], "decision": "rejected"})
        else:
            decisions.append({"item": item["item"], "decision": "chosen", "version": choice})
    return [{"name": "adjudications", "type": "json", "value": decisions}], missing


def _qa_submission(
    values: Mapping[str, Any], form: Mapping[str, str]
) -> tuple[list[dict[str, Any]], list[str]]:
    judgements, missing = [], []
    for number, item in enumerate(values.get("sample") or [], start=1):
        verdict, reason = form.get(f"verdict-{number}"), form.get(f"reason-{number}") or None
        comment = (form.get(f"comment-{number}") or "").strip()
        if verdict not in ("pass", "fail"):
            missing.append(f"answer {number} has no verdict: pass or fail it")
            continue
        if verdict == "fail" and not reason:
            missing.append(f"answer {number} failed without a reason: choose one")
            continue
        if verdict == "fail" and reason == "other" and not comment:
            missing.append(f"answer {number} failed for 'other': say in its comment what is wrong")
            continue
        judgements.append(
            {
                "item": item["item"],
                "verdict": verdict,
                "reason": reason if verdict == "fail" else None,
                "comment": comment,
            }
        )
    return [{"name": "qa_judgements", "type": "json", "value": judgements}], missing


def _access_submission(
    values: Mapping[str, Any], form: Mapping[str, str]
) -> tuple[list[dict[str, Any]], list[str]]:
    ticked = [form[key] for key in sorted(form) if key.startswith("allow-") and form[key]]
    others = [e.strip() for e in (form.get("other-annotators") or "").split(",") if e.strip()]
    allowed = list(dict.fromkeys(ticked + others))
    if form.get("outcome") == "granted" and not allowed:
        return [], ["a grant names the annotators allowed to see the content: tick or add at least one"]
    # local to the approval task: its history keeps what the officer granted, which no later change of
    # the process's variables rewrites
    return [{"name": "allowed_annotators", "type": "json", "value": allowed, "scope": "local"}], []


SUBMISSIONS = {
    DISPUTE_FORM: _dispute_submission,
    QA_FORM: _qa_submission,
    ACCESS_FORM: _access_submission,
}


def submitted_variables(
    form_key: str | None, values: Mapping[str, Any], form: Mapping[str, str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The process variables a submitted form sets, and what the reviewer must still fill in (the task
    stays open until nothing is missing)."""
    submission = SUBMISSIONS.get(form_key or "")
    return submission(values, form) if submission else ([], [])
