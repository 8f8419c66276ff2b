"""Escalation of the items annotators did not settle (flow 2): cases for senior reviewers, and their
decisions turned back into adjudicated Prodigy examples.

Plain Python (no Airflow import). An item's *versions* are its distinct answers, grouped as Prodigy's
``review`` recipe groups them (one per distinct decision: answer, spans, accepted options), each listing
the sessions that gave it. A case holds up to N items; reviewers decide each item: take one version
(``chosen``), write a ``correction``, or ``rejected``. Each decision becomes one adjudicated example
(``_adjudicated: true``, ``meta.adjudication`` saying who decided what, when, in which process and whose
version it took), which the consensus then takes as the item's final example.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prodigy_opentext.core.agreement import decision_of
from prodigy_opentext.core.consensus import CONFLICT, FLAGGED, IGNORED, LOW_SCORE, Dispute
from prodigy_opentext.core.payloads import CaseItem, EscalationCase, ItemVersion
from prodigy_opentext.core.records import ANSWERS, annotator_of
from prodigy_opentext.core.submissions import PerItemForm, per_item_entries
from prodigy_opentext.exceptions import AdjudicationInvalid

ESCALATION_PROCESS = "label_dispute_resolution"
"""The process (``include/bpmn``) a case is decided in; its senior review escalates to the leads."""
RESOLVED_END = "end_resolved"
"""Where a case ends once Airflow accepted and wrote its decisions."""
CHECK_STEP = "check_decisions"
"""Airflow's own step of the model: check the decisions, write them, or send the case back."""
DECISIONS_VARIABLE = "adjudications"
"""The process variable a reviewer's form submits: one decision per item of the case."""
ADJUDICATION_DATASET_META = "adjudication_dataset"
"""The dataset meta naming where adjudicated examples go (default ``<dataset>_adjudicated``)."""
DECISIONS = ("chosen", "corrected", "rejected")
CORRECTABLE_FIELDS = ("answer", "spans", "accept")
"""What a correction may set: the fields a decision is made of (``core.agreement.decision_of``) but the
label, which names the question itself (an item is its input and label)."""


def adjudication_dataset(dataset: str, meta: Mapping[str, Any]) -> str:
    """Where a dataset's adjudicated examples go: its meta's choice, else ``<dataset>_adjudicated``."""
    return str(meta.get(ADJUDICATION_DATASET_META) or f"{dataset}_adjudicated")


def escalated_reasons(
    dispute: Dispute, *, include_ignored: bool = True, include_flagged: bool = True
) -> list[str]:
    """The reasons a dispute goes to reviewers: disagreement and low scores always, ignores and flags
    when asked for."""
    wanted = (
        {CONFLICT, LOW_SCORE}
        | ({IGNORED} if include_ignored else set())
        | ({FLAGGED} if include_flagged else set())
    )
    return [reason for reason in dispute.reasons if reason in wanted]


def item_id(input_hash: Any, label: Any) -> str:
    """An item's id in a case: its input hash, and its label for a binary question."""
    return f"{input_hash}" if label in (None, "") else f"{input_hash}:{label}"


def item_versions(versions: Sequence[Mapping[str, Any]]) -> list[ItemVersion]:
    """The distinct answers to one item, most given first, each with the sessions that gave it."""
    grouped: dict[Any, list[Mapping[str, Any]]] = {}
    for task in versions:
        grouped.setdefault(decision_of(task), []).append(task)
    ordered = sorted(grouped.values(), key=lambda same: -len(same))
    return [
        ItemVersion(
            version=f"v{number}",
            sessions=sorted(str(annotator_of(task)) for task in same),
            answer=same[0].get("answer"),
            spans=list(same[0].get("spans") or []),
            accept=list(same[0].get("accept") or []),
            task=dict(same[0]),
        )
        for number, same in enumerate(ordered, start=1)
    ]


def case_items(disputes: Iterable[Dispute], **include: bool) -> list[CaseItem]:
    """The disputes that go to reviewers, as case items (text, versions, reasons, agreement)."""
    items = []
    for dispute in disputes:
        reasons = escalated_reasons(dispute, **include)
        if not reasons:
            continue
        versions = item_versions(dispute.versions)
        answered = sum(len(version["sessions"]) for version in versions)
        items.append(
            CaseItem(
                item=item_id(dispute.input_hash, dispute.label),
                input_hash=dispute.input_hash,
                label=dispute.label,
                text=str(dispute.versions[0].get("text") or ""),
                reasons=reasons,
                agreement=round(len(versions[0]["sessions"]) / answered, 3) if answered else 0.0,
                versions=versions,
            )
        )
    return items


def case_key(dataset: str, version: str, items: Sequence[CaseItem]) -> str:
    """A case's businessKey: its dataset version and which items it holds, so a rerun finds the same case
    for the same items, and items left unsettled by a rerun go to a case of their own."""
    digest = hashlib.sha256("\x1f".join(item["item"] for item in items).encode()).hexdigest()[:12]
    return f"{ESCALATION_PROCESS}:{dataset}:{version}:{digest}"


def cases_of(dataset: str, version: str, items: Sequence[CaseItem], per_case: int) -> list[EscalationCase]:
    """Items in cases of up to ``per_case``, numbered from 1 in item order (stable on reruns)."""
    if per_case < 1:
        raise ValueError(f"items per case must be at least 1, got {per_case}")
    chunks = [list(items[start : start + per_case]) for start in range(0, len(items), per_case)]
    return [
        EscalationCase(
            dataset=dataset,
            version=version,
            number=number,
            business_key=case_key(dataset, version, chunk),
            items=chunk,
        )
        for number, chunk in enumerate(chunks, start=1)
    ]


def reviewer_view(case: EscalationCase) -> list[dict[str, Any]]:
    """What the case's process carries for reviewers: each item's text, versions and reasons, without
    the stored tasks (the flow keeps those)."""
    return [
        {
            "item": item["item"],
            "label": item["label"],
            "text": item["text"],
            "reasons": item["reasons"],
            "agreement": item["agreement"],
            "versions": [{k: v for k, v in version.items() if k != "task"} for version in item["versions"]],
        }
        for item in case["items"]
    ]


DECISIONS_FORM = PerItemForm(
    variable=DECISIONS_VARIABLE,
    entry="decision",
    subject="item",
    shown_in="this case",
    twice="decided twice",
    missing="has no decision",
    error=AdjudicationInvalid,
)


def parse_decisions(case: EscalationCase, submitted: Any) -> dict[str, dict[str, Any]]:
    """The reviewers' decisions by item, checked against the case; :class:`AdjudicationInvalid` names
    every problem (no decisions, an item not in the case, an item left out or decided twice, a version
    the item does not have, a correction that sets nothing)."""
    items = {item["item"]: item for item in case["items"]}
    decided = per_item_entries(
        DECISIONS_FORM, submitted, items, lambda key, decision: _decision_problem(items[key], decision)
    )
    return {key: dict(decision) for key, decision in decided.items()}


def _decision_problem(item: CaseItem, decision: Mapping[str, Any]) -> str | None:
    """What is wrong with one decision on ``item`` (None when it can be written)."""
    kind = decision.get("decision")
    if kind not in DECISIONS:
        return f"{kind!r} is not one of {', '.join(DECISIONS)}"
    if kind == "chosen":
        version = decision.get("version")
        if not isinstance(version, str) or version not in _version_ids(item):
            return f"version {version!r} is not one of the item's versions"
    if kind == "corrected":
        correction = _correction(decision)
        if not correction:
            return f"a correction must set one of {', '.join(CORRECTABLE_FIELDS)}"
        if "answer" in correction and correction["answer"] not in ANSWERS:
            return f"answer {correction['answer']!r} is not one of {', '.join(ANSWERS)}"
        spans = correction.get("spans", [])
        if not isinstance(spans, list) or not all(_is_span(span, item["text"]) for span in spans):
            return "spans must be a list of {start, end, label} inside the text"
    return None


def _is_span(span: Any, text: str) -> bool:
    return (
        isinstance(span, Mapping)
        and all(isinstance(span.get(k), int) and not isinstance(span.get(k), bool) for k in ("start", "end"))
        and 0 <= span["start"] < span["end"] <= len(text)
        and isinstance(span.get("label"), str)
    )


def _version_ids(item: CaseItem) -> set[str]:
    return {version["version"] for version in item["versions"]}


def _correction(decision: Mapping[str, Any]) -> dict[str, Any]:
    correction = decision.get("correction")
    if not isinstance(correction, Mapping):
        return {}
    return {field: correction[field] for field in CORRECTABLE_FIELDS if field in correction}


def _stable_hash(*parts: Any) -> int:
    """A task hash for a version no annotator gave (a correction or a rejection), the same on reruns."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


def adjudicated_example(
    item: CaseItem,
    decision: Mapping[str, Any],
    *,
    reviewer: str,
    decided_at: str | None,
    process_instance_id: str,
    session: str,
) -> dict[str, Any]:
    """The Prodigy example a reviewer's decision on ``item`` becomes (stored in the adjudication dataset
    as ``session``)."""
    kind = decision["decision"]
    versions = {version["version"]: version for version in item["versions"]}
    taken = versions[decision["version"]] if kind == "chosen" else item["versions"][0]
    example = {k: v for k, v in taken["task"].items() if not k.startswith("_consensus")}
    if kind == "corrected":
        example.update(_correction(decision))
    elif kind == "rejected":
        example["answer"] = "reject"
    if kind != "chosen":
        example["_task_hash"] = _stable_hash(item["input_hash"], item["label"], kind, _correction(decision))
    example.pop("flagged", None)
    meta = dict(example.get("meta") or {})
    meta["adjudication"] = {
        "process_instance_id": process_instance_id,
        "reviewer": reviewer,
        "decided_at": decided_at,
        "decision": kind,
        "versions_from": taken["sessions"] if kind == "chosen" else [],
        "reasons": item["reasons"],
    }
    if decision.get("comment"):
        meta["adjudication"]["comment"] = str(decision["comment"])
    example.update(meta=meta, _adjudicated=True, _annotator_id=session, _session_id=session)
    return example


def adjudications_in(examples: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The reviewers' decisions behind a release's examples (for its manifest): which item, who decided
    what and when, in which process."""
    found = []
    for example in examples:
        adjudication = (example.get("meta") or {}).get("adjudication")
        if example.get("_adjudicated") and isinstance(adjudication, Mapping):
            found.append({"item": item_id(example.get("_input_hash"), example.get("label")), **adjudication})
    return sorted(found, key=lambda entry: entry["item"])
