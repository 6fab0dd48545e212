"""Rate limits (GCRA), their OpenAI-style headers, and the concurrency semaphore.

Guarantee tested: with a limit of L units per T seconds, the units admitted at instants within any
closed interval [a, b] sum to at most L + (b - a) * L / T (a burst of L, then the steady rate); so
at most 2L in any period, and at most L at one instant. Refusals are tight: a refused request is
admitted when retried `retry_after` seconds later, and a request of cost > L is never admitted.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costwarden.domain.ratelimit import (
    ConcurrencyLimit,
    RateLimit,
    RateLimitError,
    RateState,
    SemaphoreState,
    Slot,
    abandon,
    acquire,
    adjust,
    binding,
    check,
    format_duration,
    micros,
    peek,
    rate_limit_headers,
    release,
)

FAST = settings(max_examples=250, deadline=None, database=None)
NOW = 1_750_000_000.0


@FAST
@given(
    limit=st.integers(1, 50),
    period=st.sampled_from([1.0, 60.0, 3600.0]),
    arrivals=st.lists(st.tuples(st.floats(0, 2), st.integers(1, 20)), max_size=80),
)
def test_admitted_units_never_exceed_a_burst_plus_the_rate(
    limit: int, period: float, arrivals: list[tuple[float, int]]
) -> None:
    rate = RateLimit(limit, period)
    state = RateState()
    now = NOW
    admitted: list[tuple[float, int]] = []
    for gap, cost in arrivals:
        now += gap * period / 10
        result = check(rate, state, cost, now)
        if result.allowed:
            admitted.append((now, cost))
        else:
            assert result.state == state
            if cost > limit:
                assert result.retry_after is None
            else:
                assert result.retry_after is not None and result.retry_after > 0
                assert check(rate, state, cost, now + result.retry_after).allowed
        state = result.state
        assert 0 <= result.remaining <= limit
    for i, (first, _) in enumerate(admitted):
        total = 0
        for last, cost in admitted[i:]:
            total += cost
            # Times count in whole microseconds: one more of the rate's (rounding each end).
            assert total <= limit + (last - first + 2e-6) * limit / period + 1e-9


def test_a_burst_of_the_limit_from_idle_then_the_steady_rate() -> None:
    rate = RateLimit(60, 60.0)
    state = RateState()
    for n in range(60):
        result = check(rate, state, 1, NOW)
        assert result.allowed and result.remaining == 59 - n
        state = result.state
    refused = check(rate, state, 1, NOW)
    assert not refused.allowed and refused.retry_after == pytest.approx(1.0)
    assert refused.reset_seconds == pytest.approx(60.0)
    assert check(rate, state, 1, NOW + 1.0).allowed
    assert peek(rate, state, NOW + 30).remaining == 30


def test_token_estimates_are_corrected_once_the_actual_is_known() -> None:
    rate = RateLimit(1000, 60.0)
    taken = check(rate, RateState(), 800, NOW)
    assert taken.allowed and taken.remaining == 200
    refunded = adjust(rate, taken.state, -500, NOW)  # the answer used 300 tokens, not 800
    assert peek(rate, refunded, NOW).remaining == 700
    assert adjust(rate, refunded, -5000, NOW) == RateState(micros(NOW))  # never fuller than full
    debt = adjust(rate, refunded, 2000, NOW)  # it used far more than estimated
    assert not check(rate, debt, 1, NOW).allowed and peek(rate, debt, NOW).remaining == 0
    assert check(rate, RateState(), 1001, NOW).retry_after is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (-1, "0s"),
        (0.02, "20ms"),
        (0.0001, "1ms"),
        (0.999, "999ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (59.25, "59.25s"),
        (360, "6m0s"),
        (361.5, "6m1.5s"),
        (3600, "1h0m0s"),
        (5400.02, "1h30m0.02s"),
    ],
)
def test_durations_are_written_like_openai(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_headers_carry_the_binding_limit_of_each_kind() -> None:
    requests = RateLimit(60, 60.0)
    tokens = RateLimit(150_000, 60.0)
    by_key = (requests, check(requests, RateState(), 1, NOW))
    by_team = (RateLimit(10, 60.0), check(RateLimit(10, 60.0), RateState(), 1, NOW))
    spent = (tokens, check(tokens, RateState(), 30_000, NOW))
    chosen = binding([by_key, by_team])
    assert chosen is by_team and binding([]) is None
    assert rate_limit_headers(chosen, spent) == [
        ("x-ratelimit-limit-requests", "10"),
        ("x-ratelimit-remaining-requests", "9"),
        ("x-ratelimit-reset-requests", "6s"),
        ("x-ratelimit-limit-tokens", "150000"),
        ("x-ratelimit-remaining-tokens", "120000"),
        ("x-ratelimit-reset-tokens", "12s"),
    ]
    assert rate_limit_headers(None, None) == []


def test_limits_that_cannot_be_enforced_are_refused() -> None:
    with pytest.raises(RateLimitError):
        RateLimit(0)
    with pytest.raises(RateLimitError):
        RateLimit(10, 0.0)
    with pytest.raises(RateLimitError):
        ConcurrencyLimit(0)


@FAST
@given(
    max_active=st.integers(1, 5),
    max_waiting=st.integers(0, 5),
    ops=st.lists(st.sampled_from(["acquire", "release", "abandon"]), max_size=100),
)
def test_the_semaphore_bounds_both_counts_and_never_idles_with_a_queue(
    max_active: int, max_waiting: int, ops: list[str]
) -> None:
    limit = ConcurrencyLimit(max_active, max_waiting)
    state = SemaphoreState()
    running = waiting = 0  # what the gateway would observe
    for op in ops:
        if op == "acquire":
            slot, state = acquire(limit, state)
            running += slot is Slot.RUN
            waiting += slot is Slot.WAIT
        elif op == "release" and running:
            state, woke = release(state)
            assert woke == (waiting > 0)
            running -= 1
            if woke:
                waiting -= 1
                running += 1
        elif op == "abandon" and waiting:
            state = abandon(state)
            waiting -= 1
        assert state == SemaphoreState(running, waiting)
        assert 0 <= running <= max_active and 0 <= waiting <= max_waiting
        assert waiting == 0 or running == max_active


@FAST
@given(
    now=st.floats(1.0e9, 4.2e9),
    # Limits are per minute in config (requests/tokens per minute): up to 100 million tokens a
    # minute (1.7 million a second, an interval of 0.6 µs, below a Unix time's float resolution).
    limit=st.one_of(st.integers(1, 100_000), st.integers(100_000, 100_000_000)),
    period=st.sampled_from([10.0, 60.0, 3600.0]),
    taken=st.integers(1, 40),
)
def test_remaining_counts_down_by_one_at_unix_times(now: float, limit: int, period: float, taken: int) -> None:
    """The float resolution of a Unix time (~2.4e-7 s in 2025) must not cost a unit: a fresh
    bucket of L answers L-1 after one request, L-k after k (issue 6, defect 9: 298 of 300), at
    any rate (arrival times are integers; with a float one, a 73k/s bucket at 2^31 s was one short)."""
    rate, state = RateLimit(limit, period), RateState()
    for k in range(1, min(taken, limit) + 1):
        result = check(rate, state, 1, now)
        assert result.allowed and result.remaining == limit - k, (k, result)
        state = result.state
    assert peek(rate, state, now).remaining == limit - min(taken, limit)


@pytest.mark.parametrize("limit", [300, 4_380_000, 10_000_000, 100_000_000])
def test_a_high_rate_bucket_at_a_far_unix_time_counts_exactly(limit: int) -> None:
    """73,000 units a second and more, at 2^31 s: each unit counted, none lost to float roundings."""
    rate, state, now = RateLimit(limit, 60.0), RateState(), 2.0**31 + 0.123457
    taken = min(1000, limit // 7)
    for k in range(1, taken + 1):
        result = check(rate, state, 7, now)
        assert result.allowed and result.remaining == limit - 7 * k, (k, result)
        state = result.state
    refund = adjust(rate, state, -7 * taken, now)
    assert peek(rate, refund, now).remaining == limit


def test_remaining_after_the_first_request_of_a_300_bucket() -> None:
    assert check(RateLimit(300, 60.0), RateState(), 1, 1_764_631_234.567891).remaining == 299
