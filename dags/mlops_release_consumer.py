"""
### MLOps release consumer (example downstream of flow 3)

What an MLOps team writes to use released annotation data: scheduled on the `annotation_releases` asset,
it reads each new release's manifest, re-computes every checksum (a tampered or truncated file fails the
run before any training sees it), and only then loads the examples. Replace `load_for_training` with the
team's own training or registration step.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from prodigy_opentext.dag_defaults import ANNOTATION_RELEASES, DEFAULT_ARGS
from prodigy_opentext.publishing import check_release, training_examples_summary


@dag(
    dag_id="mlops_release_consumer",
    schedule=[ANNOTATION_RELEASES],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["mlops", "release", "example"],
    doc_md=__doc__,
)
def mlops_release_consumer():
    @task
    def verified_releases(triggering_asset_events=None) -> list[dict]:
        releases = []
        for event in triggering_asset_events[ANNOTATION_RELEASES]:
            manifest = check_release(event.extra["manifest"])
            releases.append({"manifest": event.extra["manifest"], "path": event.extra["path"], **manifest})
        return releases

    @task
    def load_for_training(releases: list[dict]) -> list[dict]:
        return [training_examples_summary(release["path"]) for release in releases]

    load_for_training(verified_releases())


mlops_release_consumer()
