"""The release story (flow 3 and its consumer): the approved batch released and consumed by MLOps.

It follows the ``dataset_release`` run that batch approval started for the dataset; the release manager
signs off once Airflow waits deferred; the release is written and the ``mlops_release_consumer`` run its
asset event starts verifies and loads it, recording its training run in MLflow where Airflow has the
``mlflow_default`` connection. Journal results: ``release``, ``consumed`` and ``training_run`` (the MLflow run
that used the release; None without that connection).
"""

from __future__ import annotations

from typing import ClassVar

from prodigy_opentext.core.review_report import DATASET_CARD_NAME
from scripts.airflow_api import after
from scripts.stories._story import Journal, World, approve, finish, open_task

RELEASE_MANAGER = "release.manager@example.com"
SIGNOFF_PROCESS = "dataset_release_signoff"
RELEASE_DAG, CONSUMER_DAG = "dataset_release", "mlops_release_consumer"


class ReleaseStory:
    dag_ids: ClassVar[tuple[str, ...]] = (RELEASE_DAG, CONSUMER_DAG)
    results: ClassVar[tuple[str, ...]] = ("release", "consumed", "training_run")

    def play(self, world: World, journal: Journal) -> None:
        api, stack = world.api, world.stack
        release = api.wait_for_new_run(RELEASE_DAG, world.for_dataset, timeout=world.timeout, stack=stack)
        world.step(f"Batch approval started release run {release['dag_run_id']}", world.run_url(release))
        signoff, waits = open_task(world, release, SIGNOFF_PROCESS, journal)
        waiting = f"OpenText task '{signoff['name']}' waits for the release manager"
        world.step(f"{waiting}; in Airflow: {', '.join(waits)}", world.reviewer.task_url(signoff))
        approve(world, signoff, waits, RELEASE_MANAGER, "Validation passed: released for training.", journal)
        released = finish(world, release, journal)
        written = api.xcom(RELEASE_DAG, release["dag_run_id"], "publish")
        journal.results["release"] = written
        world.step(f"Release of {written['examples']} examples written", written["path"])
        world.step("Its dataset card, beside manifest.json", f"{written['path']}/{DATASET_CARD_NAME}")

        consumer = api.wait_for_new_run(
            CONSUMER_DAG, lambda run: after(run["run_after"], released["start_date"]), world.timeout, stack
        )
        world.step("The release's asset event started the MLOps consumer", world.run_url(consumer))
        finish(world, consumer, journal)
        consumed = api.xcom(CONSUMER_DAG, consumer["dag_run_id"], "load_for_training")
        journal.results["consumed"] = consumed
        if training := next((loaded["mlflow"] for loaded in consumed if loaded.get("mlflow")), None):
            journal.results["training_run"] = training
            world.step("MLflow recorded the training run that used the release", training["run_url"])
