"""Operator that hands an approved batch on to the release flow."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException, DagRunTriggerException

if TYPE_CHECKING:
    from airflow.sdk import Context


class StartReleaseOperator(BaseOperator):
    """Start one release run for an approved batch; a rejected batch skips (nothing to release).

    The run id is derived from the dataset and version, so a rerun of the approval never starts a second
    release of the same batch (an existing run makes this task skip). The release flow re-checks the
    approval in OpenText itself: what this operator passes on is only where to look.

    It signals the run to Airflow the way ``TriggerDagRunOperator`` does on Airflow 3, without importing
    that operator's scheduler-side modules into every DAG file that uses it.

    :param decision: the recorded decision of a batch (``dataset``, ``version``, ``approved``), templated,
        typically the XCom of the task that recorded it.
    :param release_dag_id: the DAG that releases a dataset version.
    """

    template_fields: Sequence[str] = ("decision", "release_dag_id")
    ui_color = "#ffefeb"

    def __init__(self, *, decision: Any, release_dag_id: str = "dataset_release", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.decision = decision
        self.release_dag_id = release_dag_id

    def execute(self, context: Context) -> None:
        dataset, version = self.decision["dataset"], self.decision["version"]
        if not self.decision.get("approved"):
            raise AirflowSkipException(f"{dataset}@{version} was not approved: no release")
        run_id = f"release__{dataset}__{version}"
        self.log.info("starting release run %s of %s", run_id, self.release_dag_id)
        now = datetime.now(UTC)
        raise DagRunTriggerException(
            trigger_dag_id=self.release_dag_id,
            dag_run_id=run_id,
            conf={"dataset": dataset, "version": version},
            logical_date=now,
            run_after=now,
            reset_dag_run=False,
            skip_when_already_exists=True,
            wait_for_completion=False,
            allowed_states=["success"],
            failed_states=["failed"],
            poke_interval=60,
            deferrable=False,
        )
