"""Operator that starts a run of another DAG once, under a run id the caller derives from the work item."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException, DagRunTriggerException

from prodigy_opentext.core.payloads import RunRequest

if TYPE_CHECKING:
    from airflow.sdk import Context


class TriggerDagRunOnceOperator(BaseOperator):
    """Start one run of ``trigger_dag_id`` with ``run_id``, or skip with ``skip_reason``.

    The run id is derived from the work item (e.g. ``release__<dataset>__<version>``), so a rerun never
    starts a second run for the same item: an existing run makes this task skip. Mapped over many items
    (``expand_kwargs``), each item starts its run or skips on its own. The started DAG should re-check
    whatever it relies on: what this operator passes on is only where to look.

    It signals the run to Airflow the way ``TriggerDagRunOperator`` does on Airflow 3, without importing
    that operator's scheduler-side modules into every DAG file that uses it.

    :param trigger_dag_id: the DAG to start (templated).
    :param run_id: the run id, unique per work item (templated).
    :param conf: the run's params (templated).
    :param skip_reason: when set, start nothing and skip, saying why (templated).
    :param run: all four at once, as a task worked them out (a
        :class:`~prodigy_opentext.core.payloads.RunRequest`, e.g. another task's XCom); instead of them.
    """

    template_fields: Sequence[str] = ("trigger_dag_id", "run_id", "conf", "skip_reason", "run")
    template_fields_renderers = {"conf": "json"}
    ui_color = "#ffefeb"

    def __init__(
        self,
        *,
        trigger_dag_id: str | None = None,
        run_id: str | None = None,
        conf: dict[str, Any] | None = None,
        skip_reason: str | None = None,
        run: RunRequest | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (run is None) == (trigger_dag_id is None or run_id is None):
            raise ValueError(f"{self.task_id}: give either run, or trigger_dag_id and run_id")
        self.trigger_dag_id = trigger_dag_id
        self.run_id = run_id
        self.conf = conf
        self.skip_reason = skip_reason
        self.run = run

    def execute(self, context: Context) -> None:
        request = self.run or RunRequest(
            trigger_dag_id=str(self.trigger_dag_id),
            run_id=str(self.run_id),
            conf=dict(self.conf or {}),
            skip_reason=self.skip_reason,
        )
        if request["skip_reason"]:
            raise AirflowSkipException(request["skip_reason"])
        self.log.info("starting run %s of %s", request["run_id"], request["trigger_dag_id"])
        now = datetime.now(UTC)
        raise DagRunTriggerException(
            trigger_dag_id=request["trigger_dag_id"],
            dag_run_id=request["run_id"],
            conf=dict(request["conf"] or {}),
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
