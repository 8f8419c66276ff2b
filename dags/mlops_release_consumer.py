"""
### MLOps release consumer (example downstream of flow 3)

What an MLOps team writes to use released annotation data: scheduled on the `annotation_releases` asset,
it reads each new release's manifest, re-computes every checksum (a tampered or truncated file fails the
run before any training sees it), and only then loads the examples. Replace `load_for_training` with the
team's own training or registration step.

Steps: `prodigy_opentext.flows.release` (its consumer part); tests: `tests/flows/test_release.py`.
"""

from __future__ import annotations

import pendulum
from _governance_deployment import DEFAULT_ARGS
from airflow.sdk import dag, task

from prodigy_opentext.core.payloads import TrainingSet
from prodigy_opentext.flows._shared import ANNOTATION_RELEASES
from prodigy_opentext.flows.release import training_examples_summary, verified_release


@dag(
    dag_id="mlops_release_consumer",
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
        return [verified_release(event.extra) for event in triggering_asset_events[ANNOTATION_RELEASES]]

    @task
    def load_for_training(releases: list[dict]) -> list[TrainingSet]:
        return [training_examples_summary(release["path"]) for release in releases]

    load_for_training(verified_releases())


mlops_release_consumer()
