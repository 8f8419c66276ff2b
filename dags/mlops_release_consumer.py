"""
### MLOps release consumer (example downstream of flow 3)

What an MLOps team writes to use released annotation data: scheduled on the `annotation_releases` asset,
it reads each new release's manifest, re-computes every checksum (a tampered or truncated file fails the
run before any training sees it), and only then loads the examples; a release it has consumed before (its
idempotency key in the consumer's ledger, `data/consumers/`) is not loaded again. With the `mlflow_default`
connection, each release loaded becomes the dataset input of a training run in MLflow (digest: the manifest's
sha256; source: the release folder), recorded once, and the audit log says which run used which release.
Replace `load_for_training` with the team's own training or registration step.

Steps: `prodigy_opentext.flows.release` (its consumer part) and `prodigy_opentext.flows.mlops`; tests:
`tests/flows/test_release.py`, `tests/flows/test_mlops.py`.
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from _governance_deployment import DEFAULT_ARGS, audit_log, data_dir
from airflow.sdk import dag, task

from prodigy_opentext.flows._shared import ANNOTATION_RELEASES
from prodigy_opentext.flows.mlops import TrainedRelease, train_on_release
from prodigy_opentext.flows.release import unconsumed_releases

CONSUMER = "mlops_release_consumer"


def ledger() -> Path:
    """The releases this consumer has consumed, so a release announced twice is loaded once."""
    return data_dir() / "consumers" / f"{CONSUMER}.jsonl"


@dag(
    dag_id=CONSUMER,
    schedule=[ANNOTATION_RELEASES],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["mlops", "release", "example"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
)
def mlops_release_consumer():
    @task
    def verified_releases(triggering_asset_events=None) -> list[dict]:
        events = triggering_asset_events[ANNOTATION_RELEASES]
        return unconsumed_releases([event.extra for event in events], ledger(), release_root=data_dir())

    @task
    def load_for_training(releases: list[dict]) -> list[TrainedRelease]:
        return [train_on_release(release, ledger(), CONSUMER, audit_log()) for release in releases]

    load_for_training(verified_releases())


mlops_release_consumer()
