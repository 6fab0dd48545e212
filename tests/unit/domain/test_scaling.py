"""The budget cap on scale-out (domain.scaling): demand from in-flight and throughput, the cap
floor(remaining / (hourly price x hours left)), and the answer within [min, max]."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from costwarden.domain.scaling import CEILING, Room, ScalingRule, budget_cap, decide, demand_replicas

MONEY = st.decimals(min_value=0, max_value=Decimal(2**64), places=9, allow_nan=False, allow_infinity=False)
PRICE = st.decimals(min_value=Decimal("0.000001"), max_value=100_000, places=6, allow_nan=False, allow_infinity=False)
SECONDS = st.decimals(min_value=Decimal("0.001"), max_value=40 * 86400, places=6, allow_nan=False, allow_infinity=False)


@st.composite
def rules(draw: st.DrawFn) -> ScalingRule:
    low = draw(st.integers(0, 50))
    high = draw(st.integers(max(low, 1), 10_000))
    target = st.none() | st.decimals(min_value=Decimal("0.01"), max_value=1000, places=2)
    in_flight, rps = draw(target), draw(target)
    if in_flight is None and rps is None:
        in_flight = Decimal(1)
    return ScalingRule(low, high, in_flight, rps)


@given(rules(), st.integers(0, 2**64), PRICE, st.lists(st.tuples(MONEY, SECONDS), max_size=4))
def test_within_min_and_max_and_never_more_than_the_budget_can_pay(
    rule: ScalingRule, demand: int, hourly: Decimal, rooms: list[tuple[Decimal, Decimal]]
) -> None:
    found = [Room(f"b{i}", usd, secs) for i, (usd, secs) in enumerate(rooms)]
    decision = decide(rule, demand, hourly, found)
    assert rule.min_replicas <= decision.replicas <= rule.max_replicas
    assert decision.replicas <= max(decision.wanted, rule.min_replicas)
    for room in found:  # above the floor, every budget pays for the replicas until its window ends
        if decision.replicas > rule.min_replicas:
            assert Decimal(decision.replicas) * hourly * room.seconds_left <= room.remaining_usd * 3600
    if decision.capped:
        assert decision.budget_cap is not None and decision.budget_cap < decision.wanted
        assert decision.replicas == max(rule.min_replicas, decision.budget_cap)
    else:
        assert decision.replicas == decision.wanted


@given(MONEY, PRICE, SECONDS)
def test_the_cap_is_the_most_the_budget_pays_for(remaining: Decimal, hourly: Decimal, seconds: Decimal) -> None:
    cap = budget_cap(remaining, hourly, seconds)
    assert cap is not None and 0 <= cap <= CEILING
    if cap < CEILING:
        assert Decimal(cap) * hourly * seconds <= remaining * 3600 < Decimal(cap + 1) * hourly * seconds


def test_a_worked_example() -> None:
    """$10 left, one replica costs $2/h, one hour left: five replicas; demand wants seven."""
    rule = ScalingRule(1, 10, Decimal(4), None)
    assert demand_replicas(rule, Decimal(25), Decimal(0)) == 7  # ceil(25 / 4)
    decision = decide(rule, 7, Decimal(2), [Room("team", Decimal(10), Decimal(3600))])
    assert (decision.replicas, decision.budget_cap, decision.capped, decision.budget) == (5, 5, True, "team")
    assert decision.hours_left == 1 and "can pay for 5" in decision.reason
    # Just under the price of five: four.
    assert budget_cap(Decimal("9.999999999"), Decimal(2), Decimal(3600)) == 4


def test_the_tightest_budget_caps_and_min_replicas_holds() -> None:
    rule = ScalingRule(2, 10, None, Decimal(5))
    assert demand_replicas(rule, Decimal(100), Decimal("40.1")) == 9  # rps only: ceil(40.1 / 5)
    rooms = [Room("wide", Decimal(100), Decimal(3600)), Room("narrow", Decimal(1), Decimal(3600))]
    decision = decide(rule, 9, Decimal(1), rooms)
    assert (decision.budget, decision.budget_cap, decision.replicas, decision.capped) == ("narrow", 1, 2, True)
    assert "min_replicas 2 still holds" in decision.reason


def test_no_cap_without_a_price_or_time_left() -> None:
    rule = ScalingRule(0, 3, Decimal(1), Decimal(1))
    assert budget_cap(Decimal(5), Decimal(0), Decimal(60)) is None
    assert budget_cap(Decimal(5), Decimal(1), Decimal(0)) is None
    decision = decide(rule, 8, Decimal(0), [Room("b", Decimal(0), Decimal(60))])
    assert (decision.replicas, decision.budget_cap, decision.capped) == (3, None, False)
    assert demand_replicas(rule, Decimal(2**64), Decimal(0)) == CEILING  # clipped, never an overflow


def test_a_rule_refuses_bad_bounds() -> None:
    with pytest.raises(ValueError, match="min_replicas"):
        ScalingRule(3, 2, Decimal(1))
    with pytest.raises(ValueError, match="target"):
        ScalingRule(1, 2)
    with pytest.raises(ValueError, match="positive"):
        ScalingRule(1, 2, Decimal(0))
