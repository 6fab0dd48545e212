"""Percentiles by nearest rank: a measured value, ordered by p, exact for decimal p."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from costwarden.domain.percentiles import RAW, median, percentile, rank, raw_percentiles, summarize

SAMPLES = st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=300)


@given(SAMPLES, st.decimals(Decimal("0.1"), Decimal(100), places=1))
def test_a_percentile_is_a_sample_with_at_least_p_percent_at_or_below_it(samples: list[float], p: Decimal) -> None:
    ordered = sorted(samples)
    value = percentile(ordered, p)
    assert value in ordered
    at_or_below = sum(1 for v in ordered if v <= value)
    assert at_or_below * 100 >= p * len(ordered)
    below = sum(1 for v in ordered if v < value)
    assert below * 100 < p * len(ordered)  # the smallest such value


@given(SAMPLES)
def test_the_summary_is_ordered_and_ends_at_the_maximum(samples: list[float]) -> None:
    s = summarize(samples)
    assert s is not None
    assert s.p50 <= s.p90 <= s.p95 <= s.p99 <= s.max == max(samples)
    assert min(samples) <= s.mean <= max(samples) or abs(s.mean - min(samples)) < 1e-6
    raw = raw_percentiles(samples)
    assert len(raw) == len(RAW)
    assert list(raw.values()) == sorted(raw.values())
    assert raw["p100"] == max(samples)


def test_decimal_percentiles_avoid_float_rank_errors() -> None:
    # ceil(0.07 * 100) is 8 in binary floating point; the 7th percentile of 1..100 is 7.
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 7) == 7.0
    assert percentile(values, "99.9") == 100.0
    assert rank(1000, Decimal("99.9")) == 999


def test_bad_percentiles_and_empty_samples_are_refused() -> None:
    with pytest.raises(ValueError):
        rank(0, Decimal(50))
    with pytest.raises(ValueError):
        rank(10, Decimal(0))
    with pytest.raises(ValueError):
        rank(10, Decimal(101))
    assert summarize([]) is None
    assert raw_percentiles([]) == {}
    assert median([3.0, 1.0, 2.0, 10.0]) == 2.5
