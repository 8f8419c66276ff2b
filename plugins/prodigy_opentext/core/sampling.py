"""Deterministic, stratified QA samples of an annotation batch.

QA reviewers check a sample rather than the whole batch. The sample must be reproducible (a rerun of the
same flow, or an auditor, gets the same examples) and representative (every label and annotator in
proportion). Each example gets a rank from a seeded SHA-256 of its identity, so the choice depends only on
the seed and the examples, never on their order; strata get their share by largest remainder.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prodigy_opentext.core.records import annotator_of, record_labels

Stratum = tuple[str | None, str | None]


@dataclass
class QASample:
    """The sampled examples (in batch order) and, per stratum ``label|annotator``, population and sample."""

    tasks: list[dict[str, Any]]
    strata: dict[str, dict[str, int]]


def stratum_of(task: Mapping[str, Any]) -> Stratum:
    """An example's stratum: its first label (span, task label or accepted option) and its annotator."""
    labels = record_labels(task)
    return (labels[0] if labels else None, annotator_of(task))


def _rank(task: dict[str, Any], seed: str | int) -> str:
    identity = f"{seed}\x1f{task.get('_task_hash')}\x1f{task.get('_input_hash')}\x1f{annotator_of(task)}"
    return hashlib.sha256(identity.encode()).hexdigest()


def _quotas(sizes: Mapping[Stratum, int], total: int) -> dict[Stratum, int]:
    """Split ``total`` over strata in proportion to their sizes (largest remainder, ties by stratum)."""
    population = sum(sizes.values())
    exact = {stratum: total * size / population for stratum, size in sizes.items()}
    quotas = {stratum: math.floor(share) for stratum, share in exact.items()}
    leftover = total - sum(quotas.values())
    by_remainder = sorted(exact, key=lambda s: (-(exact[s] - quotas[s]), str(s)))
    for stratum in by_remainder[:leftover]:
        quotas[stratum] += 1
    return quotas


def qa_sample(
    tasks: Iterable[Mapping[str, Any]],
    *,
    seed: str | int,
    size: int | None = None,
    fraction: float | None = None,
) -> QASample:
    """Pick ``size`` examples, or ``ceil(fraction * batch)``, stratified by label and annotator."""
    if (size is None) == (fraction is None):
        raise ValueError("give exactly one of size and fraction")
    if size is not None and size < 0:
        raise ValueError(f"size must be >= 0, not {size}")
    if fraction is not None and not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be between 0 and 1, not {fraction}")
    batch = [dict(task) for task in tasks]
    wanted = size if size is not None else math.ceil((fraction or 0.0) * len(batch))
    total = min(len(batch), wanted)
    members: dict[Stratum, list[int]] = defaultdict(list)
    for position, task in enumerate(batch):
        members[stratum_of(task)].append(position)
    quotas = (
        _quotas({stratum: len(positions) for stratum, positions in members.items()}, total) if batch else {}
    )
    chosen: list[int] = []
    for stratum, positions in members.items():
        ranked = sorted(positions, key=lambda position: _rank(batch[position], seed))
        chosen.extend(ranked[: quotas[stratum]])
    strata = {
        f"{label}|{annotator}": {"population": len(positions), "sampled": quotas[(label, annotator)]}
        for (label, annotator), positions in sorted(members.items(), key=lambda item: str(item[0]))
    }
    return QASample(tasks=[batch[position] for position in sorted(chosen)], strata=strata)
