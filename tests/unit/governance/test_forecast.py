"""Forecasts: linear projection of a window's spend, and when it reaches the limit."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costwarden.domain.forecast import ForecastError, burn_rate, forecast, headroom

FAST = settings(max_examples=300, deadline=None, database=None)
START, END = 1_748_736_000.0, 1_751_328_000.0  # June 2025 in UTC, 30 days
LIMIT = Decimal(300)


def test_half_way_at_double_the_pace_exceeds_and_says_when() -> None:
    middle = (START + END) / 2
    result = forecast(Decimal(200), LIMIT, START, END, middle)
    assert result.projected_spend == Decimal(400)
    assert result.will_exceed and result.confident
    assert result.expected_exceed_at == pytest.approx(START + 0.75 * (END - START))
    assert result.rate_per_hour == Decimal("0.555555556")  # $200 over 360 hours
    assert headroom(LIMIT, result.projected_spend) == Decimal(-100) / Decimal(300)


def test_on_pace_does_not_exceed_and_a_spent_budget_already_has() -> None:
    middle = (START + END) / 2
    on_pace = forecast(Decimal(150), LIMIT, START, END, middle)
    assert on_pace.projected_spend == LIMIT and not on_pace.will_exceed and on_pace.expected_exceed_at is None
    spent = forecast(Decimal(301), LIMIT, START, END, middle)
    assert spent.will_exceed and spent.expected_exceed_at == middle


def test_a_busy_first_hour_is_reported_but_not_trusted() -> None:
    early = forecast(Decimal(10), LIMIT, START, END, START + 3600)
    assert early.projected_spend == Decimal(7200) and not early.confident and not early.will_exceed


def test_a_recent_rate_overrides_the_window_average() -> None:
    middle = (START + END) / 2
    result = forecast(Decimal(100), LIMIT, START, END, middle, rate_per_hour=Decimal(1))
    assert result.projected_spend == Decimal(100 + 360) and result.will_exceed
    assert result.expected_exceed_at == pytest.approx(middle + 200 * 3600)
    assert burn_rate(Decimal(10), 7200) == Decimal(5) and burn_rate(Decimal(10), 0) == 0


def test_bad_windows_are_refused() -> None:
    with pytest.raises(ForecastError, match="empty window"):
        forecast(Decimal(1), LIMIT, END, START, END)
    with pytest.raises(ForecastError, match="outside the window"):
        forecast(Decimal(1), LIMIT, START, END, END + 1)


@FAST
@given(
    rate=st.integers(0, 10_000).map(lambda c: Decimal(c) / 1000),  # USD per hour
    elapsed=st.floats(0.1, 1.0),
)
def test_a_steady_rate_projects_the_whole_window_and_agrees_with_the_exceed_time(rate: Decimal, elapsed: float) -> None:
    now = START + elapsed * (END - START)
    hours = Decimal(repr(now - START)) / 3600
    spent = rate * hours
    result = forecast(spent, LIMIT, START, END, now)
    whole = rate * Decimal(repr(END - START)) / 3600
    assert abs(result.projected_spend - whole) <= Decimal("0.000001")
    assert result.confident
    if result.expected_exceed_at is not None and spent < LIMIT:
        assert now < result.expected_exceed_at < END
        assert float(rate) * (result.expected_exceed_at - START) / 3600 == pytest.approx(float(LIMIT), rel=1e-6)
    if abs(whole - LIMIT) > Decimal("0.001"):
        assert result.will_exceed == (whole > LIMIT) == (result.expected_exceed_at is not None)
