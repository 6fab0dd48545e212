"""Choosing hardware: replicas for the rate, cost per unit, headroom, cheapest first."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from costwarden.domain.hardware import Capacity, HardwareProfile, plan, rank_options

SMALL = HardwareProfile("small", Decimal("0.10"), spot_hourly_usd=Decimal("0.03"))
BIG = HardwareProfile("big", Decimal("1.00"), accelerator="L4", accelerator_count=1)


def test_the_cheapest_for_the_rate_wins_and_a_profile_that_meets_nothing_is_left_out() -> None:
    caps = [Capacity(SMALL, 20.0, 0.0), Capacity(BIG, 400.0, 0.0), Capacity(SMALL, 0.0, 0.0, "missed")]
    # At their own capacity the big one is cheaper per request: $1.00/h for 400 req/s.
    assert [o.capacity.profile.name for o in rank_options(caps, required_rate=None)] == ["big", "small"]
    # At 10 req/s one small replica ($0.10/h) beats a big one ($1.00/h) that would idle.
    at_10 = rank_options(caps, required_rate=10.0)
    assert [(o.capacity.profile.name, o.replicas) for o in at_10] == [("small", 1), ("big", 1)]
    assert at_10[0].headroom == 1.0 and at_10[1].headroom == 39.0
    # At 400 req/s: 20 small replicas ($2.00/h) against one big ($1.00/h).
    at_400 = rank_options(caps, required_rate=400.0)
    assert [(o.capacity.profile.name, o.replicas) for o in at_400] == [("big", 1), ("small", 20)]
    assert at_400[0].cost.per_1k_requests == Decimal("0.000694444")


def test_spot_prices_are_used_when_asked_and_known() -> None:
    option = plan(Capacity(SMALL, 10.0, 0.0), None, spot=True)
    assert option is not None and option.hourly_usd == Decimal("0.03")
    big = plan(Capacity(BIG, 10.0, 0.0), None, spot=True)
    assert big is not None and big.hourly_usd == Decimal("1.00")


@given(st.floats(0.1, 1e4), st.floats(0.1, 1e5), st.floats(0, 2000))
def test_replicas_cover_the_rate_with_the_least_machines(capacity: float, required: float, tokens: float) -> None:
    option = plan(Capacity(BIG, capacity, tokens), required)
    assert option is not None
    assert option.replicas * capacity >= required * (1 - 1e-9)
    assert option.replicas == 1 or (option.replicas - 1) * capacity < required
    assert option.headroom >= -1e-9
    assert (option.cost.per_1m_tokens is None) == (round(required * tokens, 6) == 0)
