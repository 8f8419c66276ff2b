"""Batches: one reviewable state of a dataset, its version, the processes that stand for it, its review state.

Plain Python (no Airflow import). The version of a batch is derived from its content (the last example id
it holds), so equal content always gets the same version and one OpenText process per (flow, dataset,
version) is found again by its businessKey.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

REVIEW_META_KEY = "review"


class ReviewStatus:
    """Values of ``meta["review"]["status"]`` on a Prodigy dataset."""

    READY = "ready"  # annotators are done; the next batch-approval run picks it up
    REQUESTED = "requested"  # an OpenText approval process is running
    APPROVED = "approved"
    REWORK = "rework"  # rejected: annotators rework it with the reviewers' comments
    REFUSED = "refused"  # cannot be governed as it is, or its approval does not hold; says why


@dataclass(frozen=True)
class Batch:
    """One reviewable state of a dataset: its examples up to ``last_example_id``."""

    dataset: str
    last_example_id: int

    @property
    def version(self) -> str:
        """Stable for equal content (the same examples), new as soon as an answer arrives."""
        return f"b{self.last_example_id}"

    def business_key(self, process_key: str) -> str:
        return business_key(process_key, self.dataset, self.version)


def business_key(process_key: str, dataset: str, version: str) -> str:
    """OpenText businessKey of the process for (flow, dataset, version): how reruns find it again."""
    return f"{process_key}:{dataset}:{version}"


def version_last_example_id(version: str) -> int:
    """Inverse of :attr:`Batch.version`; a malformed version names itself."""
    if not version.startswith("b") or not version[1:].isdigit():
        raise ValueError(f"version {version!r} is not a batch version (b<last example id>, e.g. b1234)")
    return int(version[1:])


def review_state(meta: Mapping[str, Any]) -> dict[str, Any]:
    review = meta.get(REVIEW_META_KEY)
    return dict(review) if isinstance(review, Mapping) else {}


def approved_version(meta: Mapping[str, Any]) -> str | None:
    """The version the dataset's latest review approved, or None when that review approved none.

    It only says which version to release; whether it is approved is read back from OpenText."""
    review = review_state(meta)
    return review.get("version") if review.get("status") == ReviewStatus.APPROVED else None


def datasets_ready_for_review(datasets: Iterable[Mapping[str, Any]], only: str | None = None) -> list[str]:
    """Datasets to (re)enter batch approval: marked ready, or requested but never recorded.

    A requested review whose wait failed (timeout, outage) comes back on the next run; its businessKey
    finds the same OpenText process, so nothing is asked twice. ``only`` narrows the list to one dataset.
    """
    waiting = (ReviewStatus.READY, ReviewStatus.REQUESTED)
    ready = [
        d["name"]
        for d in datasets
        if not d.get("session") and review_state(d.get("meta") or {}).get("status") in waiting
    ]
    return [name for name in ready if only in (None, "", name)]


def is_regulated(meta: Mapping[str, Any]) -> bool:
    """A dataset is regulated when its meta says so; params of a run cannot lower that."""
    return bool(meta.get("regulated"))
