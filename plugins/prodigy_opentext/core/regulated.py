"""Regulated content (flow 5): who may see it, what is masked before anyone does, what goes back to the
case, and when a dataset is frozen.

Plain Python (no Airflow import). A case is the variables of a ``regulated_content_access`` process: an
annotation request (:func:`~prodigy_opentext.core.intake.parse_request`; its ``source`` is a file in the
holding area) with its ``classification``. A compliance officer grants access naming the annotators
(``allowed_annotators``); only then is the content loaded, masked by a redaction callable first, and only
for those annotators' sessions. What goes back to the case is metadata, never content.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from prodigy_opentext.core.approvals import same_person
from prodigy_opentext.core.intake import parse_request, team_of
from prodigy_opentext.core.payloads import AnnotationRequest
from prodigy_opentext.core.records import session_name_in
from prodigy_opentext.exceptions import RequestRefused

REGULATED_PROCESS = "regulated_content_access"
HOLD_STEP = "hold_content"
"""Airflow's step before the access approval: the held source checked, its size and sha256 posted."""
APPROVAL_STEP = "access_approval"
LOAD_STEP = "load_content"
"""Airflow's step once access is granted: the content masked and loaded for the allowed sessions."""
RELEASE_STEP = "await_release"
"""Airflow's step until a release holds the case's tasks: the completion metadata recorded, case closed."""
ACCESS_META_KEY = "access"


class AccessStatus:
    """Values of ``meta["access"]["status"]`` on a regulated dataset."""

    GRANTED = "granted"
    CLOSED = "closed"  # the case was completed with its release: access ends with it, nothing to revoke
    REVOKED = "revoked"  # the case was cancelled: the dataset is frozen, not served, not released


Redaction = Callable[[str], str]
"""Masks what annotators must not read in a text; returns the text to load."""

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"(?<![\w+])\+?\(?\d[\d ()./-]{5,}\d(?!\w)")
_PHONE_MIN_DIGITS = 7
_DATE = re.compile(
    r"(?<![\d.+/-])(?:\d{4}[./-]\d{1,2}[./-]\d{1,2}|\d{1,2}[./-]\d{1,2}[./-](?:\d{4}|\d{2})"
    r"|(?:19|20)\d\d\s*[-/]\s*(?:19|20)\d\d)(?![\d/-]|\.\d)"
)
"""Dates and year ranges, left as they are: they look like phone numbers to the pattern above."""
EMAIL_MASK, PHONE_MASK = "[EMAIL]", "[PHONE]"
KEPT_AS_IS = frozenset({"tokens", "spans", "label", "answer", "accept", "options"})
"""Task fields redaction does not rewrite: structure, or what is dropped when the text changes (tokens,
spans); options are masked by their ``text`` only."""


def mask_contact_details(text: str) -> str:
    """The shipped redaction: e-mail addresses become ``[EMAIL]``; phone numbers (7 digits or more, with
    spaces, dots, slashes, dashes, brackets or a leading +) ``[PHONE]``. Dates and year ranges are kept;
    other long digit runs (order or claim numbers) are masked too: redaction errs on the side of masking."""
    parts, at = [], 0
    for date in _DATE.finditer(text):
        parts += [_mask_segment(text[at : date.start()]), date.group()]
        at = date.end()
    return "".join([*parts, _mask_segment(text[at:])])


def _mask_segment(text: str) -> str:
    def phone(match: re.Match[str]) -> str:
        found = match.group()
        return PHONE_MASK if sum(c.isdigit() for c in found) >= _PHONE_MIN_DIGITS else found

    return _PHONE.sub(phone, _EMAIL.sub(EMAIL_MASK, text))


def _redacted(value: Any, redact: Redaction) -> Any:
    """Every string in ``value`` (a task field: text, html, meta and what it nests) through ``redact``."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redacted(v, redact) for v in value]
    if isinstance(value, Mapping):
        return {k: _redacted(v, redact) for k, v in value.items()}
    return value


def _masked_option(option: Any, redact: Redaction) -> Any:
    if isinstance(option, Mapping) and isinstance(option.get("text"), str):
        return {**option, "text": redact(option["text"])}
    return option


def redact_tasks(
    tasks: Iterable[Mapping[str, Any]], redact: Redaction | None
) -> tuple[list[dict[str, Any]], int]:
    """The tasks with every text they carry (``text``, ``html``, ``meta``, option texts...) masked by
    ``redact`` (none: as they are), and how many changed. A changed task loses its tokens, spans and
    hashes, which named the unmasked text: it is tokenised and hashed again when loaded."""
    masked, changed = [], 0
    for task in tasks:
        task = dict(task)
        if redact is not None:
            new = {
                k: v if k in KEPT_AS_IS or k.startswith("_") else _redacted(v, redact)
                for k, v in task.items()
            }
            if isinstance(task.get("options"), list):
                new["options"] = [_masked_option(o, redact) for o in task["options"]]
            if new != task:
                changed += 1
                task = {
                    k: v for k, v in new.items() if k not in ("tokens", "spans") and not k.startswith("_")
                }
        masked.append(task)
    return masked, changed


def parse_case(pid: str, values: Mapping[str, Any], *, task_id: str = "") -> AnnotationRequest:
    """The case as annotation work (its ``content_source`` is the request's source); the classification
    is required. :class:`RequestRefused` names every field to fix."""
    problems = []
    if not str(values.get("classification") or "").strip():
        problems.append("classification is empty: say how the content is classified (e.g. confidential)")
    try:
        request = parse_request(pid, {**values, "source": values.get("content_source")}, task_id=task_id)
    except RequestRefused as refused:
        problems += [p.replace("source is empty", "content_source is empty") for p in refused.problems]
    if problems:
        raise RequestRefused(problems)
    return request


def allowed_team(values: Mapping[str, Any], granted_by: str | None) -> dict[str, str]:
    """The sessions (name -> e-mail) the access approval allows: its ``allowed_annotators``, checked. The
    grant must say who gave it, and that officer cannot be among them (nobody grants themselves access)."""
    if not values.get("allowed_annotators"):
        raise RequestRefused(["the access approval names no annotators (allowed_annotators): grant it again"])
    team, problems = team_of(values["allowed_annotators"], "allowed_annotators")
    if not granted_by:
        problems.append(
            "OpenText does not say who granted access (no assignee on the approval): grant it again"
        )
    elif same_person(granted_by) in {same_person(e) for e in team.values()}:
        problems.append(f"{granted_by} granted access to themselves: another officer must grant it")
    if problems:
        raise RequestRefused(problems)
    return team


def access_meta(
    pid: str, classification: str, content_sha256: str, granted_by: str | None, team: Mapping[str, str]
) -> dict[str, Any]:
    """What a regulated dataset's meta records of its access: the case, who granted it to whom."""
    return {
        "regulated": True,
        "classification": classification,
        ACCESS_META_KEY: {
            "status": AccessStatus.GRANTED,
            "case": pid,
            "granted_by": granted_by,
            "sessions": sorted(team),
            "content_sha256": content_sha256,
        },
    }


def revoked_meta(access: Mapping[str, Any], reason: str, at: datetime | None = None) -> dict[str, Any]:
    """The meta of a frozen dataset: nobody's session is served any more; why and since when."""
    when = (at or datetime.now(UTC)).isoformat(timespec="seconds")
    return {
        "sessions": [],
        ACCESS_META_KEY: {**access, "status": AccessStatus.REVOKED, "revoked": when, "reason": reason},
    }


def frozen_reason(meta: Mapping[str, Any]) -> str | None:
    """Why a dataset may not be reviewed, served or released any more, or None when it may."""
    access = meta.get(ACCESS_META_KEY)
    if not isinstance(access, Mapping) or access.get("status") != AccessStatus.REVOKED:
        return None
    return (
        f"access to its regulated content was revoked (case {access.get('case')} cancelled: "
        f"{access.get('reason') or 'no reason given'}): the dataset is frozen"
    )


def completion_metadata(
    manifest: Mapping[str, Any], manifest_sha256: str, answers: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """What the case records once a release holds its tasks: counts, annotators, dates and hashes, and the
    release version; never a text. ``answers`` are the release's examples (for their timestamps)."""
    stamps = sorted(int(a["_timestamp"]) for a in answers if isinstance(a.get("_timestamp"), int | float))
    files, source = manifest.get("files") or {}, manifest.get("source") or {}
    return {
        "release_version": manifest["version"],
        "manifest_sha256": manifest_sha256,
        "annotations_sha256": (files.get("annotations.jsonl") or {}).get("sha256"),
        "examples": (manifest.get("counts") or {}).get("examples"),
        "by_answer": (manifest.get("counts") or {}).get("by_answer"),
        "by_label": manifest.get("label_distribution"),
        "annotators": [session_name_in(source.get("dataset", ""), s) for s in source.get("sessions") or []],
        "first_answer": _iso(stamps[0]) if stamps else None,
        "last_answer": _iso(stamps[-1]) if stamps else None,
        "released": manifest.get("created"),
    }


def _iso(stamp: int) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")
