"""Task forms, chosen by a task's ``formKey`` as OpenText chooses a form: what a reviewer needs from the
process variables, shown as tables and choices (never raw JSON), and what the form submits as process
variables when the reviewer completes the task.

``label-dispute-review`` (the ``label_dispute_resolution`` model's reviews): one fieldset per item of the
case (``#item-<n>``) with its text (spans marked), reasons and agreement, and one radio button per version
(``#choice-<n>-<version>``) and to reject the item (``#choice-<n>-rejected``); submitted as the json
variable ``adjudications``. Why the case came back (``review_problems``) shows above the items.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

DISPUTE_FORM = "label-dispute-review"
SHOWN_BY_FORM = {DISPUTE_FORM: frozenset({"examples", "review_problems", "adjudications"})}
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


def _dispute_fields(values: Mapping[str, Any]) -> str:
    items = values.get("examples") or []
    problems = values.get("review_problems")
    parts = [f'<p id="review-problems" class="error">{escape(str(problems))}</p>' if problems else ""]
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


SUBMIT_BUTTON = (
    '<button id="submit-decisions" type="submit" name="action" value="decide">Submit decisions</button>'
)


def form_fields(form_key: str | None, values: Mapping[str, Any]) -> str | None:
    """The form's fields for a task, or None when the task has no form of its own (outcome buttons);
    the form is sent with :data:`SUBMIT_BUTTON`."""
    return _dispute_fields(values) if form_key == DISPUTE_FORM else None


def submitted_variables(
    form_key: str | None, values: Mapping[str, Any], form: Mapping[str, str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The process variables a submitted form sets, and what the reviewer must still fill in (the task
    stays open until nothing is missing)."""
    if form_key != DISPUTE_FORM:
        return [], []
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
