"""The retry schedule: exponential, capped, jittered within [ceiling/2, ceiling]; Retry-After read."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from costwarden.alerts.delivery import backoff_delay, retry_after_s, retryable


def test_the_schedule_doubles_up_to_the_cap() -> None:
    lows = [backoff_delay(n, 0.5, 30.0, 0.0) for n in range(8)]
    highs = [backoff_delay(n, 0.5, 30.0, 0.999999) for n in range(8)]
    assert lows == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    assert [round(h, 3) for h in highs] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


@settings(max_examples=200, deadline=None, database=None)
@given(
    retry=st.integers(0, 40),
    base=st.floats(0.001, 10.0),
    cap=st.floats(0.001, 120.0),
    jitter=st.floats(0.0, 1.0, exclude_max=True),
)
def test_every_delay_lies_between_half_the_ceiling_and_the_ceiling(
    retry: int, base: float, cap: float, jitter: float
) -> None:
    ceiling = min(cap, base * 2.0**retry)
    delay = backoff_delay(retry, base, cap, jitter)
    assert ceiling / 2 <= delay <= ceiling


def test_what_is_retried() -> None:
    assert all(retryable(s) for s in (429, 500, 502, 503, 504, 599))
    assert not any(retryable(s) for s in (400, 401, 403, 404, 409, 413, 422))


def test_retry_after_in_seconds_is_capped_and_dates_are_ignored() -> None:
    assert retry_after_s("3", 30.0) == 3.0
    assert retry_after_s("3600", 30.0) == 30.0
    assert retry_after_s("-1", 30.0) == 0.0
    assert retry_after_s(None, 30.0) is None
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", 30.0) is None
    assert retry_after_s("nan", 30.0) is None
