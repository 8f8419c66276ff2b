"""The sandbox's clock: wall-clock time plus an offset that tests advance to make timers fall due.

Process times (start, end, task creation, due dates) read this clock. Token expiry deliberately uses
the wall clock, so advancing process time by hours does not log every client out.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

from sandbox.opentext.storage import Store

_OFFSET_SETTING = "clock_offset_seconds"


class SandboxClock:
    def __init__(self, store: Store):
        self.store = store

    @property
    def offset_seconds(self) -> float:
        return float(self.store.get_setting(_OFFSET_SETTING, 0.0))

    def advance(self, seconds: float) -> None:
        self.store.set_setting(_OFFSET_SETTING, self.offset_seconds + seconds)

    def now(self) -> float:
        """Sandbox time as epoch seconds."""
        return time.time() + self.offset_seconds


def format_timestamp(epoch_seconds: float | None) -> str | None:
    """OpenText's timestamp format: ``2018-04-17T10:17:43.902+0000``."""
    if epoch_seconds is None:
        return None
    moment = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def parse_timestamp(text: str) -> float:
    """Read an ISO 8601 date or date-time (``+0000``, ``+00:00`` or ``Z``; naive means UTC)."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def resolve_due_date(value: object, now: float) -> float | None:
    """A task due date from its evaluated ``dueDate`` attribute: an ISO 8601 duration (``P3D``,
    ``PT4H``) counted from ``now``, or an ISO 8601 date-time. Raises ValueError for anything else."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    if text.upper().startswith("P"):
        try:
            parsed = TimerEventDefinition.parse_iso_duration(text)
        except Exception:  # SpiffWorkflow raises a bare Exception for invalid durations
            raise ValueError(f"'{text}' is not an ISO 8601 duration") from None
        start = datetime.fromtimestamp(now, tz=UTC)
        return now + TimerEventDefinition.get_timedelta_from_start(parsed, start) / timedelta(seconds=1)
    try:
        return parse_timestamp(text)
    except ValueError:
        raise ValueError(f"'{text}' is neither an ISO 8601 duration nor a date-time") from None
