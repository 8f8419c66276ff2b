"""Operator that hands an approved batch on to the release flow."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk.exceptions import AirflowSkipException

if TYPE_CHECKING:
    from airflow.sdk import Context


class StartReleaseOperator(TriggerDagRunOperator):
    """Start one release run for an approved batch; a rejected batch skips (nothing to release).

    The run id is derived from the dataset and version, so a rerun of the approval never starts a second
    release of the same batch. The release flow re-checks the approval in OpenText itself: what this
    operator passes on is only where to look.

    :param decision: the recorded decision of a batch (``dataset``, ``version``, ``approved``), templated,
        typically the XCom of the task that recorded it.
    :param release_dag_id: the DAG that releases a dataset version.
    """

    template_fields: Sequence[str] = (*TriggerDagRunOperator.template_fields, "decision")

    def __init__(self, *, decision: Any, release_dag_id: str = "dataset_release", **kwargs: Any) -> None:
        super().__init__(trigger_dag_id=release_dag_id, skip_when_already_exists=True, **kwargs)
        self.decision = decision

    def execute(self, context: Context) -> None:
        dataset, version = self.decision["dataset"], self.decision["version"]
        if not self.decision.get("approved"):
            raise AirflowSkipException(f"{dataset}@{version} was not approved: no release")
        self.conf = {"dataset": dataset, "version": version}
        self.trigger_run_id = f"release__{dataset}__{version}"
        self.log.info("starting release run %s of %s", self.trigger_run_id, self.trigger_dag_id)
        super().execute(context)
