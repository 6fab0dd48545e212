"""Cost per unit, exact: from a total, and from an hourly price at a throughput."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from costwarden.domain.money import quantize
from costwarden.domain.unit_cost import from_hourly, from_total, rate

USD = st.decimals(Decimal(0), Decimal(10_000), places=9)


@given(USD, st.integers(1, 10**7), st.integers(0, 10**9))
def test_per_1k_times_requests_gives_back_the_total(total: Decimal, requests: int, tokens: int) -> None:
    unit = from_total(total, requests, tokens)
    rounding = Decimal("0.0000000005") * requests / 1000  # half a nano-dollar on each 1k
    assert abs(unit.per_1k_requests * requests / 1000 - total) <= rounding
    assert (unit.per_1m_tokens is None) == (tokens == 0)


def test_an_hourly_price_at_a_throughput() -> None:
    # $3.60/h serving 10 req/s: $0.001 per second, $0.0001 per request, $0.1 per 1k.
    unit = from_hourly(Decimal("3.60"), Decimal(10), Decimal(1000))
    assert unit.per_1k_requests == Decimal("0.1")
    assert unit.per_1m_tokens == Decimal("1")
    assert from_hourly(Decimal("3.60"), Decimal(10), None, replicas=3).per_1k_requests == Decimal("0.3")


@given(st.decimals(Decimal("0.01"), Decimal(100), places=4), st.floats(0.01, 1e5), st.integers(1, 50))
def test_hourly_cost_scales_with_replicas_and_inversely_with_throughput(hourly: Decimal, rps: float, n: int) -> None:
    one = from_hourly(hourly, rate(rps), None)
    many = from_hourly(hourly, rate(rps), None, replicas=n)
    assert abs(many.per_1k_requests - quantize(one.per_1k_requests * n)) <= Decimal("0.000000001") * n


def test_rates_must_be_finite_and_work_must_exist() -> None:
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(ValueError):
            rate(bad)
    with pytest.raises(ValueError):
        from_total(Decimal(1), 0, 0)
    with pytest.raises(ValueError):
        from_hourly(Decimal(1), Decimal(0), None)
