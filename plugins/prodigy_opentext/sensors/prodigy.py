"""Sensor that waits for a Prodigy annotation batch to be done."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf

from prodigy_opentext.core.payloads import BatchCounts
from prodigy_opentext.core.records import BatchTarget
from prodigy_opentext.exceptions import DatasetNotFoundError, ProdigyDatabaseError
from prodigy_opentext.hooks.prodigy import ProdigyHook

if TYPE_CHECKING:
    from airflow.sdk import Context


class ProdigyBatchSensor(BaseSensorOperator):
    """Wait until a Prodigy dataset has ``min_answers`` answers, and/or every input has answers from
    ``annotators_per_input`` distinct annotators; push the counts to XCom.

    Deferrable by default: one cheap check, then the wait moves to the triggerer
    (:class:`~prodigy_opentext.triggers.prodigy.ProdigyBatchTrigger`) and takes no worker slot.

    :param dataset: the Prodigy dataset (templated).
    :param min_answers: answers the dataset must hold (Prodigy's count, every answer kind) (templated).
    :param annotators_per_input: distinct annotators every answered input must have (templated).
    :param min_inputs: with ``annotators_per_input``, how many inputs must be answered at all (the size of the
        task stream), so that the first answers of a batch do not count as every input being done (templated).
        Templated values render to numbers, or to ``""``/``"None"`` for unset.
    :param poke_interval: seconds between two reads of the database, deferred or not.
    :param deferrable: wait in the triggerer (default from ``[operators] default_deferrable``).
    :param error_budget: seconds the deferred wait tolerates the database being unreachable (or the dataset
        missing) before failing.
    """

    template_fields: Sequence[str] = ("dataset", "min_answers", "annotators_per_input", "min_inputs")

    def __init__(
        self,
        *,
        dataset: str,
        min_answers: int | str | None = None,
        annotators_per_input: int | str | None = None,
        min_inputs: int | str = 1,
        prodigy_conn_id: str = ProdigyHook.default_conn_name,
        poke_interval: float = 60.0,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=True),
        error_budget: float = 900.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.dataset = dataset
        self.min_answers = min_answers
        self.annotators_per_input = annotators_per_input
        self.min_inputs = min_inputs
        given = (min_answers, annotators_per_input, min_inputs)
        if all(value is None or isinstance(value, int) for value in given):  # not templated nor an XComArg
            BatchTarget.from_rendered(min_answers, annotators_per_input, min_inputs)  # fails the DAG file
        self.prodigy_conn_id = prodigy_conn_id
        self.deferrable = deferrable
        self.error_budget = error_budget

    @cached_property
    def hook(self) -> ProdigyHook:
        return ProdigyHook(self.prodigy_conn_id)

    @property
    def target(self) -> BatchTarget:
        """The batch target from the (rendered) fields."""
        return BatchTarget.from_rendered(self.min_answers, self.annotators_per_input, self.min_inputs)

    def _counts(self) -> BatchCounts:
        counts = self.hook.batch_counts(self.dataset, self.target.annotators_per_input)
        self.log.info("Dataset %r: %s (target %s)", self.dataset, counts, self.target.as_dict())
        return counts

    def poke(self, context: Context) -> PokeReturnValue:
        counts = self._counts()
        return PokeReturnValue(is_done=self.target.reached(counts), xcom_value=counts)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        try:
            counts = self._counts()
        except DatasetNotFoundError as err:
            self.log.info("%s; waiting for it in the triggerer", err)
        else:
            if self.target.reached(counts):
                return counts
        from prodigy_opentext.triggers.prodigy import ProdigyBatchTrigger  # the triggerer's side

        self.defer(
            trigger=ProdigyBatchTrigger(
                dataset=self.dataset,
                target=self.target.as_dict(),
                prodigy_conn_id=self.prodigy_conn_id,
                poll_interval=self.poke_interval,
                error_budget=self.error_budget,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> BatchCounts:
        """Resume after the trigger fired: return the counts, or fail with the trigger's error."""
        event = event if isinstance(event, dict) else {}
        status = event.get("status")
        if status == "error":
            raise ProdigyDatabaseError(
                f"waiting for Prodigy dataset {self.dataset!r} failed: {event['message']}"
            )
        counts = event.get("counts") if status == "reached" else None
        if not isinstance(counts, dict) or not isinstance(counts.get("answers"), int):
            raise ValueError(
                f"unexpected event from ProdigyBatchTrigger for dataset {self.dataset!r}: {event!r}"
            )
        if not self.target.reached(counts):
            raise ValueError(f"ProdigyBatchTrigger fired for {self.dataset!r} below its target: {counts}")
        self.log.info("Dataset %r is done: %s", self.dataset, counts)
        return cast("BatchCounts", counts)  # the trigger's event carries ProdigyHook.batch_counts
