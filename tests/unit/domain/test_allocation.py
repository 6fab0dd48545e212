"""Allocation math: busy-time sweep and the split of provisioned cost (property tests)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from costwarden.domain.allocation import IDLE, IDLE_MODES, DeploymentUsage, IdleMode, allocate, money, split
from costwarden.domain.busy import IntervalSet, busy_time
from costwarden.domain.hardware import HardwareProfile

PROFILE = HardwareProfile(name="gpu", hourly_usd=Decimal("3.6"), accelerator="H200", accelerator_count=1, vcpus=8)
GROUPS = [("team-a",), ("team-b",), ("team-c",)]

intervals_st = st.lists(
    st.tuples(
        st.floats(min_value=-50, max_value=150, allow_nan=False),
        st.floats(min_value=0, max_value=80, allow_nan=False),
        st.integers(min_value=0, max_value=2),
    ),
    max_size=40,
)


def _usage(items: list[tuple[float, float, int]], replicas: int, price: Decimal) -> DeploymentUsage:
    window = 100.0
    ints = IntervalSet(0.0, window)
    for start, length, group in items:
        ints.add(start, start + length, group)
    profile = HardwareProfile(name="p", hourly_usd=price, vcpus=4)
    return DeploymentUsage("dep", profile, replicas, window, busy_time(ints, replicas), GROUPS)


def test_one_replica_busy_is_the_union_and_overlaps_share_equally() -> None:
    ints = IntervalSet(0.0, 100.0)
    ints.add(0.0, 10.0, 0)
    ints.add(5.0, 15.0, 1)  # overlaps a for 5 s
    ints.add(50.0, 60.0, 0)
    busy = busy_time(ints, 1)
    assert busy.total == pytest.approx(25.0)  # union: [0, 15] + [50, 60]
    assert busy.by_group[0] == pytest.approx(5 + 2.5 + 10)
    assert busy.by_group[1] == pytest.approx(2.5 + 5)


def test_two_replicas_serve_two_overlapping_requests_in_full() -> None:
    ints = IntervalSet(0.0, 100.0)
    ints.add(0.0, 10.0, 0)
    ints.add(0.0, 10.0, 1)
    ints.add(0.0, 10.0, 1)
    busy = busy_time(ints, 2)
    assert busy.total == pytest.approx(20.0)  # three requests, two replicas busy
    assert busy.by_group[0] == pytest.approx(20 / 3)


def test_backwards_and_outside_intervals_are_dropped_not_made_up() -> None:
    ints = IntervalSet(0.0, 100.0)
    assert not ints.add(10.0, 5.0, 0)  # the clock jumped back
    assert not ints.add(200.0, 210.0, 0)
    assert ints.add(-5.0, 5.0, 0)  # clipped to the window
    assert ints.dropped == 2
    assert busy_time(ints, 1).total == pytest.approx(5.0)


def test_worked_example_rows_and_idle() -> None:
    ints = IntervalSet(0.0, 3600.0)
    ints.add(0.0, 900.0, 0)
    ints.add(900.0, 1200.0, 1)
    usage = DeploymentUsage("dep", PROFILE, 2, 3600.0, busy_time(ints, 2), GROUPS)
    result = allocate([usage], 1)
    by = {r.group: r for r in result.rows}
    assert result.provisioned_usd == Decimal("7.2")  # 2 replicas x $3.6 x 1 h
    assert by[("team-a",)].used_usd == Decimal("0.9")  # 900 s at $3.6/h
    assert by[("team-b",)].used_usd == Decimal("0.3")
    assert by[(IDLE,)].idle_usd == Decimal("6.0")
    assert by[("team-a",)].gpu_hours == Decimal("0.25")
    assert by[("team-a",)].cpu_core_hours == Decimal("2")
    assert result.efficiency == pytest.approx(1.2 / 7.2)
    (dep,) = result.deployments  # the deployment's own figures: 2 GPU-hours provisioned, 20 min used
    assert (dep.deployment, dep.replicas, dep.accelerator) == ("dep", 2, "H200")
    assert (dep.provisioned_usd, dep.used_usd, dep.idle_usd) == (Decimal("7.2"), Decimal("1.2"), Decimal("6.0"))
    assert (dep.gpu_hours, dep.used_gpu_hours) == (Decimal(2), Decimal(1200) / 3600)
    assert dep.idle_gpu_hours == by[(IDLE,)].gpu_hours
    assert dep.efficiency == pytest.approx(1.2 / 7.2)


def test_measured_busy_time_wins_and_keeps_request_proportions() -> None:
    ints = IntervalSet(0.0, 3600.0)
    ints.add(0.0, 300.0, 0)
    ints.add(300.0, 400.0, 1)
    busy = busy_time(ints, 1)
    usage = DeploymentUsage("dep", PROFILE, 1, 3600.0, busy, GROUPS, measured_busy_seconds=800.0, measured_by="nvml")
    result = allocate([usage], 1)
    by = {r.group: r for r in result.rows}
    assert by[("team-a",)].used_usd == money(PROFILE.hourly_usd, Decimal(600))
    assert by[("team-b",)].used_usd == money(PROFILE.hourly_usd, Decimal(200))
    assert "measured (nvml)" in result.bases["dep"]


@given(st.integers(min_value=0, max_value=10**15), st.lists(st.floats(min_value=0, max_value=1e6), max_size=8))
def test_split_sums_exactly(units: int, weights: list[float]) -> None:
    amount = Decimal(units) * Decimal("0.000000001")
    parts = split(amount, weights)
    assert all(p >= 0 for p in parts)
    if sum(weights) > 0:
        assert sum(parts, Decimal(0)) == amount


@given(
    intervals_st,
    st.integers(min_value=1, max_value=4),
    st.decimals(min_value=0, max_value=1000, places=4),
    st.sampled_from(IDLE_MODES),
    st.randoms(use_true_random=False),
)
def test_identity_no_negative_rows_and_order_invariance(
    items: list[tuple[float, float, int]], replicas: int, price: Decimal, mode: IdleMode, rnd: object
) -> None:
    result = allocate([_usage(items, replicas, price)], 1, mode)
    assert all(r.used_usd >= 0 and r.idle_usd >= 0 for r in result.rows)
    assert result.idle_usd >= 0 and result.used_usd <= result.provisioned_usd
    total = sum((r.total_usd for r in result.rows), Decimal(0))
    if mode == "hide":
        assert total + result.idle_usd == result.provisioned_usd
    else:
        assert total == result.provisioned_usd
    for dep in result.deployments:  # one deployment's used + idle is its provisioned, in every idle mode
        assert dep.used_usd == result.used_usd and dep.idle_usd == result.idle_usd >= 0
        assert dep.provisioned_usd == result.provisioned_usd
    shuffled = list(items)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    again = allocate([_usage(shuffled, replicas, price)], 1, mode)
    assert [(r.group, r.used_usd, r.idle_usd) for r in again.rows] == [
        (r.group, r.used_usd, r.idle_usd) for r in result.rows
    ]
