"""The steps of batch approval (flow 1), as functions the DAG's tasks call.

They join the hooks to the governance rules: which batches are ready, what reviewers are shown, and how
their decision is recorded in Prodigy and in the audit log. Keeping them here leaves the DAG file to
wiring, and lets other flows reuse a step.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from prodigy_opentext.agreement import annotation_agreement
from prodigy_opentext.audit import AuditLog
from prodigy_opentext.consensus import build_consensus
from prodigy_opentext.governance import (
    BATCH_APPROVAL_PROCESS,
    Batch,
    ReviewStatus,
    approval_record,
    datasets_ready_for_review,
    is_regulated,
    review_state,
)
from prodigy_opentext.hooks.prodigy import ProdigyHook
from prodigy_opentext.records import decode_record

log = logging.getLogger(__name__)

AUDIT_ACTOR = "airflow"


def find_ready_batches(
    only: str | None = None, prodigy_conn_id: str = ProdigyHook.default_conn_name
) -> list[dict]:
    """The batches to review: datasets marked ready, or ``only`` (named by hand, whatever its meta says)."""
    hook = ProdigyHook(prodigy_conn_id)
    names = [only] if only else datasets_ready_for_review(hook.list_datasets())
    batches = []
    for name in names:
        last_id = hook.last_example_id(name)
        if last_id is None:
            log.info("dataset %s holds no answers yet: nothing to review", name)
            continue
        batch = Batch(name, last_id)
        batches.append(
            {
                "dataset": name,
                "version": batch.version,
                "last_example_id": last_id,
                "regulated": is_regulated(hook.get_meta(name)),
            }
        )
    log.info("batches ready for review: %s", [f"{b['dataset']}@{b['version']}" for b in batches] or "none")
    return batches


def prepare_review_package(
    batch: dict, review_root: Path, prodigy_conn_id: str = ProdigyHook.default_conn_name
) -> dict:
    """Export the batch for reviewers, compute its statistics, and say which process to start for it."""
    hook = ProdigyHook(prodigy_conn_id)
    dataset, version = batch["dataset"], batch["version"]
    package_dir = review_root / dataset / version
    package_dir.mkdir(parents=True, exist_ok=True)
    answers = package_dir / "answers.jsonl"
    manifest = hook.export_jsonl(dataset, answers, until_id=batch["last_example_id"])
    statistics = batch_statistics(answers)
    statistics["counts"] = {
        k: manifest[k] for k in ("by_answer", "by_label", "by_annotator") if k in manifest
    }
    statistics["examples"] = manifest.get("rows", statistics.get("examples"))
    statistics["quarantined"] = manifest.get("quarantined", 0)
    (package_dir / "statistics.json").write_text(json.dumps(statistics, indent=2, sort_keys=True) + "\n")
    hook.set_meta(
        dataset,
        {
            "review": {
                **review_state(hook.get_meta(dataset)),
                "status": ReviewStatus.REQUESTED,
                "version": version,
            }
        },
    )
    batch_ref = Batch(dataset, batch["last_example_id"])
    return {
        **batch,
        "package": str(package_dir),
        "statistics": statistics,
        "process": {
            "business_key": batch_ref.business_key(BATCH_APPROVAL_PROCESS),
            "process_name": f"Approve annotation batch {dataset} {version}",
            "variables": {
                "dataset": dataset,
                "version": version,
                "regulated": bool(batch["regulated"]),
                "package_location": str(package_dir),
                "answers_sha256": manifest["sha256"],
                "examples": statistics["examples"],
                "agreement_method": statistics["agreement"]["method"],
                "agreement": statistics["agreement"]["value"],
                "open_disputes": statistics["disputes"],
                "statistics": json.dumps(statistics, sort_keys=True),
            },
        },
    }


def batch_statistics(answers_path: Path) -> dict[str, Any]:
    """Agreement and open disputes of an exported batch (every annotator's answers)."""
    with open(answers_path, "rb") as answers:
        tasks = [decode_record(line, row=n) for n, line in enumerate(answers, start=1) if line.strip()]
    consensus = build_consensus(tasks)
    return {
        "examples": len(tasks),
        "agreement": annotation_agreement(tasks),
        "disputes": len(consensus.disputes),
        "items": consensus.counts()["merged"],
    }


def record_review_decision(
    package: dict, decision: dict, audit_path: Path, prodigy_conn_id: str = ProdigyHook.default_conn_name
) -> dict:
    """Write the reviewers' decision into the dataset's meta and the audit log (idempotent on reruns)."""
    dataset, version = package["dataset"], package["version"]
    approved = bool(decision.get("approved"))
    signoff = approval_record(decision, kind="batch_approval")
    status = ReviewStatus.APPROVED if approved else ReviewStatus.REWORK
    hook = ProdigyHook(prodigy_conn_id)
    review = {
        **review_state(hook.get_meta(dataset)),
        "status": status,
        "version": version,
        "signoff": signoff,
    }
    if not approved:
        review["rework"] = {
            "version": version,
            "comments": [c["message"] for c in signoff["comments"] if c.get("message")],
        }
    hook.set_meta(dataset, {"review": review})
    entry = AuditLog(audit_path).append(
        AUDIT_ACTOR,
        "batch_approved" if approved else "batch_rejected",
        f"{dataset}@{version}",
        {"signoff": signoff, "package": package["package"]},
        event_key=f"{BATCH_APPROVAL_PROCESS}:{signoff['process_instance_id']}",
    )
    log.info(
        "%s@%s %s by %s at %s (audit entry %s)",
        dataset,
        version,
        status,
        signoff["approver"],
        signoff["decided_at"],
        entry.entry["hash"][:12],
    )
    return {"dataset": dataset, "version": version, "approved": approved, "signoff": signoff}
