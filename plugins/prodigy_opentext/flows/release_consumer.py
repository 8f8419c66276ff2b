"""What an MLOps consumer of releases runs (the example downstream of flow 3), as functions its tasks call.

DAG ``mlops_release_consumer`` (``dags/mlops_release_consumer.py``); tests ``tests/flows/test_release.py``
(the release's asset event) and ``tests/deployment``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prodigy_opentext.core.payloads import TrainingSet
from prodigy_opentext.core.records import RecordSummary, parse_record
from prodigy_opentext.core.release import verify_release

log = logging.getLogger(__name__)


def verified_release(announced: Mapping[str, Any]) -> dict[str, Any]:
    """A release an asset event announced, after every checksum was re-computed against its manifest."""
    manifest = verify_release(Path(announced["manifest"]).parent)
    return {"manifest": announced["manifest"], "path": announced["path"], **manifest}


def training_examples_summary(release_path: str) -> TrainingSet:
    """Load a verified release's examples the way a training job would, and summarise what it got."""
    summary = RecordSummary()
    with open(Path(release_path) / "annotations.jsonl", "rb") as lines:
        for n, line in enumerate(lines, start=1):
            summary.add(parse_record(line, row=n))
    log.info("loaded %d examples from %s: labels %s", summary.total, release_path, summary.by_label)
    counts = summary.as_dict()
    return TrainingSet(
        path=release_path,
        total=counts["total"],
        by_answer=counts["by_answer"],
        by_label=counts["by_label"],
        by_annotator=counts["by_annotator"],
    )
