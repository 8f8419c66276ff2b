"""Release steps as the DAG runs them: an equal rerun is a no-op, other content for a version fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from prodigy_opentext.publishing import ReleaseVersionTaken, publish_release
from prodigy_opentext.release import ReleaseConflict

APPROVALS = [{"kind": "batch_approval", "outcome": "approved", "approver": "sme@example.com"}]


def staged(folder: Path, labels: list[str]) -> dict:
    folder.mkdir(parents=True)
    annotations, disputes = folder / "annotations.jsonl", folder / "disputes.jsonl"
    annotations.write_text(
        "".join(
            json.dumps(
                {"text": f"Acme {i}", "label": label, "answer": "accept", "_input_hash": i, "_task_hash": i}
            )
            + "\n"
            for i, label in enumerate(labels)
        )
    )
    disputes.write_text("")
    return {
        "dataset": "brands",
        "version": "b12",
        "annotations": str(annotations),
        "disputes": str(disputes),
        "sessions": ["brands-alice"],
    }


def publish(tmp_path: Path, staged_data: dict, run_id: str) -> dict:
    return publish_release(
        staged_data,
        {"success": True},
        APPROVALS,
        release_root=tmp_path / "data",
        audit_path=tmp_path / "data" / "audit.jsonl",
        run_id=run_id,
    )


def test_an_equal_rerun_is_a_no_op_and_other_content_fails_without_retries(tmp_path: Path) -> None:
    first = publish(tmp_path, staged(tmp_path / "run1", ["BRAND", "BRAND"]), "manual__1")
    again = publish(tmp_path, staged(tmp_path / "run2", ["BRAND", "BRAND"]), "manual__2")
    assert (first["already_released"], again["already_released"]) == (False, True)
    assert again["path"] == first["path"]

    with pytest.raises(ReleaseVersionTaken) as taken:
        publish(tmp_path, staged(tmp_path / "run3", ["BRAND", "PRODUCT"]), "manual__3")
    assert isinstance(taken.value, ReleaseConflict) and isinstance(taken.value, AirflowFailException)
    assert "release brands b12 already exists with different content" in str(taken.value)
    assert "file 'annotations.jsonl'" in str(taken.value)
    manifest = json.loads((Path(first["path"]) / "manifest.json").read_text())
    assert manifest["run_id"] == "manual__1", "the existing release stays as it was"
