"""The rate search brackets the highest passing rate of any monotone SLO within its tolerance."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from costwarden.domain.rate_search import RateSearch


@given(
    capacity=st.floats(0.01, 5000),
    start=st.floats(0.1, 100),
    tolerance=st.floats(0.01, 0.5),
)
def test_the_search_ends_with_the_capacity_bracketed(capacity: float, start: float, tolerance: float) -> None:
    search = RateSearch(start=start, max_rate=1000.0, min_rate=0.1, tolerance=tolerance, max_steps=60)
    tried: list[float] = []
    while (rate := search.next_rate()) is not None:
        tried.append(rate)
        search = search.record(rate, rate <= capacity)
    assert len(tried) <= 60
    assert all(0.1 <= r <= 1000.0 for r in tried)
    if search.best is None:
        assert capacity < min(tried) and min(tried) / 2 < 0.1
        return
    assert search.best <= capacity
    if capacity >= 1000.0:
        assert search.best == 1000.0
    else:
        assert search.high is not None and search.high > capacity
        assert search.high <= search.best * (1 + tolerance)


def test_a_search_stops_at_max_steps_and_refuses_bad_bounds() -> None:
    search = RateSearch(start=1, max_rate=1e6, max_steps=3)
    for _ in range(3):
        rate = search.next_rate()
        assert rate is not None
        search = search.record(rate, True)
    assert search.next_rate() is None and search.best == 4
    with pytest.raises(ValueError):
        RateSearch(start=0, max_rate=1)
    with pytest.raises(ValueError):
        RateSearch(start=2, max_rate=1)
