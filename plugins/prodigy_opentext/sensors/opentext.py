"""Sensor that waits for reviewers in OpenText Workflow Service to approve or reject."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import BaseSensorOperator, BranchMixIn, PokeReturnValue, conf
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException

from prodigy_opentext.core.approvals import APPROVED_END_ACTIVITIES, APPROVED_OUTCOMES, judged
from prodigy_opentext.core.payloads import Decision, JudgedDecision
from prodigy_opentext.decision_signals import forget_signals
from prodigy_opentext.exceptions import OpenTextError
from prodigy_opentext.failures import OpenTextApprovalRejected
from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook

if TYPE_CHECKING:
    from airflow.sdk import Context

REJECTION_PATHS = ("fail", "skip", "branch", "continue")


class OpenTextApprovalSensor(BaseSensorOperator, BranchMixIn):
    """Wait until reviewers decide on an OpenText process instance; push the decision to XCom.

    The decision is the completion of ``task_definition_key`` if given, else the process variable
    ``decision_variable`` being set, else the end of the instance. Whether it approves is the project's one
    rule, :func:`prodigy_opentext.core.approvals.is_approved`: a cancelled instance never approves, one that
    ended approves when it ended in one of ``approved_end_activities``, and a decision taken while the
    instance runs approves when its outcome is one of ``approved_outcomes``. The defaults fit the project's
    models in ``include/bpmn`` (``approved``/``rejected`` reviews, ``pass``/``rework`` QA checks).

    The XCom ``return_value`` holds ``process_instance_id``, ``business_key``, ``outcome``, ``approved``,
    ``approver``, ``decided_at``, ``comments`` (author, message, time), ``end_activity_id``, ``task_id``.

    :param process_instance_id: the OpenText process instance to watch (templated).
    :param task_definition_key: wait for this user task to be completed (templated).
    :param decision_variable: wait for this process variable to be set; its value is the outcome (templated).
    :param on_rejection: ``"fail"`` (raise :class:`OpenTextApprovalRejected`), ``"skip"`` (skip this task
        and, by trigger rules, its downstream), ``"branch"`` (follow ``rejected_task_ids``) or
        ``"continue"`` (succeed with ``approved: false`` in the decision, for a downstream task that records
        both outcomes, e.g. mapped over many batches).
    :param approved_task_ids: with ``on_rejection="branch"``, the downstream tasks to follow on approval.
    :param rejected_task_ids: with ``on_rejection="branch"``, the downstream tasks to follow on rejection.
    :param response_timeout: how long reviewers have to decide (seconds or timedelta; default: the
        sensor default timeout). Kept apart from ``execution_timeout``, which bounds the task's running time.
        It counts from the process instance's start in OpenText, so retrying or clearing the task does not
        give reviewers a fresh period.
    :param poke_interval: seconds between two reads of OpenText, deferred or not; a deferred wait also
        reads at once when the model calls Airflow back (:mod:`prodigy_opentext.decision_signals`).
    :param deferrable: wait in the triggerer (default from ``[operators] default_deferrable``); otherwise
        the sensor pokes in ``mode`` (``poke`` or ``reschedule``).
    :param error_budget: seconds the deferred wait tolerates OpenText being unreachable before failing.
    """

    template_fields: Sequence[str] = (
        "process_instance_id",
        "task_definition_key",
        "decision_variable",
        "approved_task_ids",
        "rejected_task_ids",
    )
    ui_color = "#d9ecf7"

    def __init__(
        self,
        *,
        process_instance_id: str,
        task_definition_key: str | None = None,
        decision_variable: str | None = None,
        approved_outcomes: Sequence[str] = APPROVED_OUTCOMES,
        approved_end_activities: Sequence[str] = APPROVED_END_ACTIVITIES,
        on_rejection: str = "fail",
        approved_task_ids: str | Sequence[str] | None = None,
        rejected_task_ids: str | Sequence[str] | None = None,
        response_timeout: timedelta | float | None = None,
        opentext_conn_id: str = OpenTextWorkflowHook.default_conn_name,
        poke_interval: timedelta | float = 30.0,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=True),
        error_budget: float = 900.0,
        **kwargs: Any,
    ) -> None:
        if on_rejection not in REJECTION_PATHS:
            raise ValueError(f"on_rejection is {on_rejection!r}; expected one of {REJECTION_PATHS}")
        if on_rejection == "branch" and (approved_task_ids is None or rejected_task_ids is None):
            raise ValueError("on_rejection='branch' needs approved_task_ids and rejected_task_ids")
        super().__init__(
            poke_interval=poke_interval, timeout=response_timeout or kwargs.pop("timeout", None), **kwargs
        )
        self.process_instance_id = process_instance_id
        self.task_definition_key = task_definition_key
        self.decision_variable = decision_variable
        self.approved_outcomes = tuple(approved_outcomes)
        self.approved_end_activities = tuple(approved_end_activities)
        self.on_rejection = on_rejection
        self.approved_task_ids = approved_task_ids
        self.rejected_task_ids = rejected_task_ids
        self.opentext_conn_id = opentext_conn_id
        self.deferrable = deferrable
        self.error_budget = error_budget

    @property
    def response_timeout(self) -> timedelta:
        return timedelta(seconds=self.timeout)

    @cached_property
    def hook(self) -> OpenTextWorkflowHook:
        return OpenTextWorkflowHook(self.opentext_conn_id)

    def _read_decision(self) -> Decision | None:
        return self.hook.read_decision(
            self.process_instance_id, self.task_definition_key, self.decision_variable
        )

    def poke(self, context: Context) -> PokeReturnValue:
        decision = self._read_decision()
        if decision is None and datetime.now(UTC) >= self._response_deadline:
            self._time_out(self._response_deadline)
        return PokeReturnValue(is_done=decision is not None, xcom_value=decision)

    def execute(self, context: Context) -> JudgedDecision:
        if not self.deferrable:
            return self._conclude(context, super().execute(context))
        decision = self._read_decision()
        if decision is None:
            from prodigy_opentext.triggers.opentext import OpenTextProcessTrigger  # the triggerer's side

            deadline = self._response_deadline
            remaining = deadline - datetime.now(UTC)
            if remaining <= timedelta(0):
                self._time_out(deadline)
            self.log.info("No decision yet on %s; deferring until %s", self.process_instance_id, deadline)
            self.defer(
                trigger=OpenTextProcessTrigger(
                    process_instance_id=self.process_instance_id,
                    task_definition_key=self.task_definition_key,
                    decision_variable=self.decision_variable,
                    opentext_conn_id=self.opentext_conn_id,
                    poll_interval=self.poke_interval,
                    deadline=deadline.isoformat(),
                    error_budget=self.error_budget,
                ),
                method_name="execute_complete",
                timeout=remaining,
            )
        return self._conclude(context, decision)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> JudgedDecision:
        status = event.get("status")
        if status == "decided":
            return self._conclude(context, event["decision"])
        if status == "timeout":
            self._time_out(datetime.fromisoformat(event["deadline"]))
        raise OpenTextError(**event["error"])

    @cached_property
    def _response_deadline(self) -> datetime:
        started = self.hook.process_started_at(self.process_instance_id)
        return (started or datetime.now(UTC)) + self.response_timeout

    def _forget_signals(self) -> None:
        """Best effort: a signal decides nothing, so failing to delete one never fails the wait."""
        try:
            forget_signals(self.process_instance_id)
        except Exception as error:
            self.log.warning(
                "could not delete the decision signals of %s: %s", self.process_instance_id, error
            )

    def _time_out(self, deadline: datetime) -> NoReturn:
        message = (
            f"no decision on OpenText process instance {self.process_instance_id} by {deadline.isoformat()}, "
            f"the end of its response timeout ({self.response_timeout} from the process start); the process "
            "still runs: cancel it in OpenText to ask again, or wait with a longer response_timeout"
        )
        self._forget_signals()
        if self.soft_fail or self.never_fail:
            raise AirflowSkipException(message)
        raise AirflowSensorTimeout(message)

    def _conclude(self, context: Context, decision: Decision) -> JudgedDecision:
        """Record the decision and take the approved or the configured rejection path; the process's
        callback signals, if any, have served (:func:`~prodigy_opentext.decision_signals.forget_signals`)."""
        self._forget_signals()
        result = judged(
            decision, outcomes=self.approved_outcomes, end_activities=self.approved_end_activities
        )
        summary = (
            f"OpenText process instance {result['process_instance_id']} "
            f"{'approved' if result['approved'] else 'rejected'}: outcome {result['outcome']!r} "
            f"by {result['approver']} at {result['decided_at']} (end {result['end_activity_id']})"
        )
        self.log.info(summary)
        if self.on_rejection == "continue" or (result["approved"] and self.on_rejection != "branch"):
            return result
        # Rejections and branches leave by exception, so the decision is pushed here rather than returned.
        context["ti"].xcom_push(key="return_value", value=result)
        if self.on_rejection == "branch":
            self.do_branch(context, self.approved_task_ids if result["approved"] else self.rejected_task_ids)
            return result
        if self.on_rejection == "skip":
            raise AirflowSkipException(summary)
        raise OpenTextApprovalRejected(summary, result)
