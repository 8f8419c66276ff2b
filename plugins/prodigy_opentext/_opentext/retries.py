"""When a failed call to OpenText is tried again, and how long to wait first."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter inside a bounded budget; the server's ``Retry-After`` wins."""

    max_attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 30.0
    budget: float = 120.0

    def next_delay(self, attempt: int, elapsed: float, retry_after: float | None) -> float | None:
        """Seconds to wait before retrying failed attempt number ``attempt`` (0-based), or None to give up."""
        if attempt + 1 >= self.max_attempts:
            return None
        if retry_after is not None:
            delay = retry_after
        else:
            delay = min(self.max_delay, self.base_delay * 2**attempt) * random.uniform(1.0, 1.25)
        if elapsed + delay > self.budget:
            return None
        return delay


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (it may be a number of seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None
