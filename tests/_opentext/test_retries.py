"""Retry decisions: exponential backoff inside a budget, the server's Retry-After first."""

from __future__ import annotations

from prodigy_opentext._opentext.retries import RetryPolicy, parse_retry_after


def test_retry_policy_backs_off_exponentially_within_its_budget() -> None:
    policy = RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=4.0, budget=100.0)
    delays = [policy.next_delay(attempt, 0.0, None) for attempt in range(5)]
    assert [int(d) for d in delays[:4]] == [1, 2, 4, 4]
    assert delays[4] is None
    assert policy.next_delay(0, 0.0, retry_after=7.0) == 7.0
    assert policy.next_delay(0, 95.0, retry_after=7.0) is None


def test_retry_after_in_seconds_or_http_date() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after(None) is None
