"""Annotation requests from OpenText (flow 4, and the model improvement requests of flow 8): what a request
must say, the order approved ones are provisioned in, and how its source becomes Prodigy tasks.

Plain Python (no Airflow import). A request is the variables of an ``annotation_request_intake`` process:
``title``, ``source`` (a file Airflow can read, or ``attachment:<name>`` for a file attached to the request:
JSONL, CSV or plain text, one task per line), ``task_type``
(``ner``, ``textcat`` or ``choice``), ``labels``, ``instructions``, ``priority``, ``due_date``,
``approvers``, ``annotators`` (the team's e-mails) and ``annotations_per_task``. Everything wrong with a
request or its source is named at once (the request gets it as a comment) before anything is created.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from prodigy_opentext.core.paths import plain_name
from prodigy_opentext.core.payloads import AnnotationRequest
from prodigy_opentext.core.records import check_dataset_name, record_labels, session_name_in, set_hashes
from prodigy_opentext.exceptions import RequestRefused, UnsafeName

INTAKE_PROCESS = "annotation_request_intake"
PROVISION_STEP = "provision_dataset"
"""Airflow's step once the data owners approved: create the dataset and its tasks, or refuse the source."""
PROGRESS_STEP = "track_progress"
"""Airflow's step while the team annotates: progress posted on the request, completed at the target."""
ATTACHMENT_SOURCE = "attachment:"
"""A source given as ``attachment:<file name>``: the file attached to the request in OpenText."""
TASK_TYPES = ("ner", "textcat", "choice")
PRIORITIES = {"urgent": 90, "high": 75, "normal": 50, "low": 25}
"""Named priorities, as OpenText's 0-100 task priority (a number is taken as it is)."""
ROWS_NAMED = 20
"""How many bad rows a refusal names (the rest are counted)."""
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def priority_of(value: Any) -> int | None:
    """A request's priority as a number from 0 to 100 (higher first), or None when it is neither such a
    number (or its text) nor a name."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int | float):
        return int(value) if math.isfinite(value) and 0 <= value <= 100 else None
    return PRIORITIES.get(str(value).strip().lower())


def _due(value: Any) -> date | None:
    try:
        return datetime.fromisoformat(str(value)).date() if value not in (None, "") else None
    except ValueError:
        return None


def _list_of_text(value: Any) -> list[str] | None:
    if isinstance(value, str):
        value = [part for part in re.split(r"[,\n]", value)]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return [v.strip() for v in value if v.strip()]


def session_name(email: str) -> str:
    """The Prodigy session name of an annotator (``alice.smith@example.com`` → ``alice.smith``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", email.split("@", 1)[0]).strip("_") or "annotator"


def team_of(value: Any, field: str) -> tuple[dict[str, str], list[str]]:
    """The Prodigy sessions (name -> e-mail) of a list of e-mails (or their comma-separated text), and
    what is wrong with it, naming ``field``."""
    emails = _list_of_text(value)
    if not emails or not all(re.fullmatch(r"[^@\s]+@[^@\s]+", e) for e in emails):
        return {}, [f"{field} must list the team's e-mail addresses"]
    team = {session_name(email): email for email in emails}
    clashes = sorted(name for name in team if sum(session_name(e) == name for e in set(emails)) > 1)
    if clashes:
        return team, [
            f"{field} {', '.join(clashes)}: two e-mails give one Prodigy session name (the part before @)"
        ]
    return team, []


def parse_request(
    process_instance_id: str, values: Mapping[str, Any], *, task_id: str = ""
) -> AnnotationRequest:
    """The request a process carries, checked; :class:`RequestRefused` names every field to fix."""
    problems = []
    title = str(values.get("title") or "").strip()
    if not title:
        problems.append("title is empty: say what the annotation work is for")
    source = str(values.get("source") or "").strip()
    if not source:
        problems.append("source is empty: name the file with the texts (JSONL, CSV or plain text)")
    task_type = str(values.get("task_type") or "").strip().lower()
    if task_type not in TASK_TYPES:
        problems.append(f"task_type {values.get('task_type')!r} is not one of {', '.join(TASK_TYPES)}")
    labels = _list_of_text(values.get("labels"))
    if not labels:
        problems.append("labels is empty: list the labels annotators may use")
    team, named = team_of(values.get("annotators"), "annotators")
    problems += named
    priority = priority_of(values.get("priority", "normal"))
    if priority is None:
        problems.append(
            f"priority {values.get('priority')!r} is not a number or one of {', '.join(PRIORITIES)}"
        )
    due = _due(values.get("due_date"))
    if values.get("due_date") not in (None, "") and due is None:
        problems.append(f"due_date {values.get('due_date')!r} is not a date (YYYY-MM-DD)")
    per_task = values.get("annotations_per_task", 1)
    if isinstance(per_task, bool) or not isinstance(per_task, int) or per_task < 1:
        problems.append(f"annotations_per_task {per_task!r} must be a whole number of at least 1")
    elif team and per_task > len(team):
        problems.append(
            f"annotations_per_task {per_task} needs at least {per_task} annotators, not {len(team)}"
        )
    dataset = str(values.get("dataset") or "").strip() or _dataset_for(title, process_instance_id)
    try:
        check_dataset_name(dataset)
        plain_name(dataset, "dataset")
    except (ValueError, UnsafeName) as bad:
        problems.append(f"dataset {dataset!r}: {bad}")
    if problems:
        raise RequestRefused(problems)
    return AnnotationRequest(
        process_instance_id=process_instance_id,
        task_id=task_id,
        title=title,
        source=source,
        task_type=task_type,
        labels=labels or [],
        instructions=str(values.get("instructions") or ""),
        priority=int(priority or 0),
        due_date=due.isoformat() if due else None,
        approvers=_list_of_text(values.get("approvers")) or [],
        annotators=team,
        annotations_per_task=int(per_task),
        dataset=dataset,
    )


def _dataset_for(title: str, process_instance_id: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")[:40] or "request"
    return f"{slug}_{process_instance_id.replace('-', '')[:8]}"


def provisioning_order(requests: Iterable[AnnotationRequest]) -> list[AnnotationRequest]:
    """Highest priority first, then the earliest due date (none last), then the oldest request id."""
    return sorted(
        requests,
        key=lambda r: (-r["priority"], r["due_date"] is None, r["due_date"] or "", r["process_instance_id"]),
    )


def tokens_of(text: str) -> list[dict[str, Any]]:
    """Words and punctuation with their offsets, for manual span annotation of untokenised text."""
    return [
        {"text": m.group(), "start": m.start(), "end": m.end(), "id": number}
        for number, m in enumerate(_TOKEN.finditer(text))
    ]


def request_tasks(request: AnnotationRequest, tasks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The source's tasks as the request's task type needs them, deduplicated by task hash; tasks that
    use a label outside the request's are refused, each named by its row."""
    if not tasks:
        raise RequestRefused(["the source holds no tasks: it is empty"])
    allowed = set(request["labels"])
    foreign = [
        f"task {number}: label(s) {', '.join(sorted(labels - allowed))} not among the request's labels"
        for number, labels in ((n, _labels_used(task)) for n, task in enumerate(tasks, start=1))
        if labels - allowed
    ]
    if foreign:
        raise RequestRefused(_named(foreign, "rows use other labels"))
    options = [{"id": label, "text": label} for label in request["labels"]]
    prepared: dict[Any, dict[str, Any]] = {}
    for task in tasks:
        ready = {k: v for k, v in task.items() if not k.startswith("_")}
        if request["task_type"] == "ner" and "tokens" not in ready and isinstance(ready.get("text"), str):
            ready["tokens"] = tokens_of(ready["text"])
        if request["task_type"] in ("textcat", "choice"):
            ready.setdefault("options", options)
        meta = dict(ready.get("meta") or {})
        meta["request"] = request["process_instance_id"]
        ready["meta"] = meta
        set_hashes(ready)
        prepared.setdefault(ready["_task_hash"], ready)
    return list(prepared.values())


def _labels_used(task: Mapping[str, Any]) -> set[str]:
    """Every label a task names: its spans, its label, accepted options and the options it offers."""
    offered = {str(o.get("id")) for o in task.get("options") or [] if isinstance(o, Mapping)}
    return set(record_labels(task)) | offered


def _named(problems: list[str], what: str) -> list[str]:
    more = len(problems) - ROWS_NAMED
    return problems[:ROWS_NAMED] + ([f"... and {more} more {what}"] if more > 0 else [])


def dataset_meta(request: AnnotationRequest, stream: str) -> dict[str, Any]:
    """What the request's Prodigy dataset records of it: who asked what, for whom, by when."""
    return {
        "request": {
            "process_instance_id": request["process_instance_id"],
            "title": request["title"],
            "priority": request["priority"],
            "due_date": request["due_date"],
            "approvers": request["approvers"],
        },
        "labels": request["labels"],
        "task_type": request["task_type"],
        "instructions": request["instructions"],
        "annotator_emails": request["annotators"],
        "sessions": sorted(request["annotators"]),
        "annotations_per_task": request["annotations_per_task"],
        "stream": stream,
    }


def progress_figures(
    answers_by_annotator: Mapping[str, int], tasks: int, annotations_per_task: int, dataset: str
) -> dict[str, Any]:
    """Answers against the target (every task answered ``annotations_per_task`` times), per annotator."""
    target = tasks * annotations_per_task
    answers = sum(answers_by_annotator.values())
    return {
        "answers": answers,
        "target": target,
        "percent": round(100 * min(answers, target) / target, 1) if target else 100.0,
        "by_annotator": {
            session_name_in(dataset, session): count
            for session, count in sorted(answers_by_annotator.items())
        },
        "reached": answers >= target,
    }


def improvement_request(
    pid: str, task_id: str, values: dict[str, Any], existing: dict[str, Any] | None
) -> AnnotationRequest:
    """The request as annotation work: its examples' tasks go to ``existing`` (that dataset's meta: its
    labels, team and task type) or to a new dataset from the request's own labels and annotators."""
    problems = []
    model, problem = str(values.get("model") or "").strip(), str(values.get("problem") or "").strip()
    if not model:
        problems.append("model is empty: name the model to improve")
    if not problem:
        problems.append("problem is empty: say what the model gets wrong")
    examples = values.get("examples")
    if not isinstance(examples, list) or not examples:
        problems.append("examples is empty: list the inputs the model gets wrong")
    slug = re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_")[:30] or "model"
    base = {
        "title": f"{model}: {problem}",
        "source": "the request's examples",
        "instructions": f"{problem} (policy {values.get('policy_reference') or 'not given'})",
        "dataset": values.get("dataset") or f"improve_{slug}_{pid.replace('-', '')[:8]}",
        **{k: v for k, v in values.items() if k in ("priority", "due_date", "annotations_per_task")},
    }
    if existing is not None:
        base |= {
            "task_type": existing.get("task_type"),
            "labels": existing.get("labels"),
            "annotators": list((existing.get("annotator_emails") or {}).values()),
            "annotations_per_task": existing.get("annotations_per_task", 1),
        }
    else:
        base |= {k: values.get(k) for k in ("task_type", "labels", "annotators")}
    try:
        request = parse_request(pid, base, task_id=task_id)
    except RequestRefused as refused:
        problems += refused.problems
    if problems:
        raise RequestRefused(problems)
    return request


def example_tasks(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's examples as tasks (a text each, or a task object), tagged with the model and policy."""
    tasks = []
    for example in values.get("examples") or []:
        task: dict[str, Any] = dict(example) if isinstance(example, dict) else {"text": str(example)}
        given = task.get("meta")
        meta: dict[str, Any] = dict(given) if isinstance(given, dict) else {}
        meta.update(model=values.get("model"), policy_reference=values.get("policy_reference"))
        tasks.append({**task, "meta": meta})
    return tasks
