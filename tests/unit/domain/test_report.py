"""Spend reports: query validation, the nearest-rank percentile, cost per 1k requests."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costwarden.domain.money import ZERO
from costwarden.domain.report import GROUP_DIMENSIONS, QueryError, SpendQuery, SpendRow, nearest_rank

FAST = settings(max_examples=150, deadline=None, database=None)


def test_a_valid_query() -> None:
    query = SpendQuery(group_by=("team", "model"), start=10.0, end=20.0, where=(("environment", "prod"),))
    assert query.group_by == ("team", "model")


@pytest.mark.parametrize("dimension", GROUP_DIMENSIONS)
def test_every_dimension_is_accepted(dimension: str) -> None:
    SpendQuery(group_by=(dimension,), where=((dimension, "x"),))


def test_unknown_group_by_dimension() -> None:
    with pytest.raises(QueryError, match="unknown dimension 'colour'") as info:
        SpendQuery(group_by=("team", "colour"))
    assert "team" in str(info.value)  # the message lists what is allowed


def test_unknown_filter_dimension() -> None:
    # A filter name reaches SQL as a column name, so it must be checked like group_by.
    with pytest.raises(QueryError, match="unknown dimension"):
        SpendQuery(group_by=(), where=(("cost_nanos; DROP TABLE ledger", "x"),))


@pytest.mark.parametrize(("start", "end"), [(10.0, 10.0), (10.0, 9.0)])
def test_empty_window(start: float, end: float) -> None:
    with pytest.raises(QueryError, match="empty"):
        SpendQuery(group_by=(), start=start, end=end)


def test_open_windows_are_fine() -> None:
    SpendQuery(group_by=(), start=10.0)
    SpendQuery(group_by=(), end=10.0)


def brute_force_nearest_rank(values: list[float], fraction: Fraction) -> float:
    """The smallest value v such that at least `fraction` of all values are <= v."""
    n = len(values)
    for v in sorted(values):
        if Fraction(sum(1 for x in values if x <= v), n) >= fraction:
            return v
    raise AssertionError("unreachable for a fraction <= 1")


@FAST
@given(
    st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=60),
    st.sampled_from(["0.5", "0.9", "0.95", "0.99", "1", "0.01"]),
)
def test_nearest_rank_matches_the_definition(values: list[float], fraction: str) -> None:
    got = nearest_rank(sorted(values), float(fraction))
    assert got == brute_force_nearest_rank(values, Fraction(fraction))


@FAST
@given(st.integers(min_value=1, max_value=5000))
def test_nearest_rank_agrees_with_the_sql_integer_rule(n: int) -> None:
    # The stores compute rank = (n * pct + 99) // 100; Python must pick the same element.
    values = [float(i) for i in range(1, n + 1)]
    assert nearest_rank(values, 0.5) == float((n * 50 + 99) // 100)
    assert nearest_rank(values, 0.95) == float((n * 95 + 99) // 100)


def test_nearest_rank_examples() -> None:
    assert nearest_rank([], 0.5) is None
    assert nearest_rank([7.0], 0.95) == 7.0
    assert nearest_rank([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert nearest_rank([1.0, 2.0, 3.0, 4.0], 0.95) == 4.0
    assert nearest_rank([1.0, 2.0, 3.0, 4.0], 0.0) == 1.0  # rank is at least 1


def test_cost_per_1k_requests() -> None:
    row = SpendRow(group=("a",), requests=3, cost_usd=Decimal("0.000123456"))
    # 0.000123456 * 1000 / 3 = 0.041152 (exactly)
    assert row.cost_per_1k_requests == Decimal("0.041152")
    rounded = SpendRow(group=(), requests=7, cost_usd=Decimal("0.01"))
    assert rounded.cost_per_1k_requests == Decimal("1.428571")  # 10/7 to 6 places


def test_cost_per_1k_requests_without_requests() -> None:
    assert SpendRow(group=(), requests=0, cost_usd=Decimal(5)).cost_per_1k_requests == ZERO


@FAST
@given(st.integers(min_value=1, max_value=10**6), st.integers(min_value=0, max_value=10**12))
def test_cost_per_1k_requests_property(requests: int, nanos: int) -> None:
    cost = Decimal(nanos).scaleb(-9)
    got = SpendRow(group=(), requests=requests, cost_usd=cost).cost_per_1k_requests
    assert got.as_tuple().exponent == -6
    exact = Fraction(nanos, 10**9) * 1000 / requests
    assert abs(Fraction(got) - exact) <= Fraction(1, 2 * 10**6)
