"""Replica-seconds from a Prometheus range query (pure): Σ replicas(t) x step on the query's grid,
exact in Decimal; a step without a value (or with one that is not a replica count) is a gap."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from costwarden.domain.allocation import DeploymentUsage, allocate, money
from costwarden.domain.busy import IntervalSet, busy_time
from costwarden.domain.hardware import HardwareProfile
from costwarden.domain.replicas import grid, replica_seconds

START = 1_765_000_000.25


def test_the_integral_counts_each_step_and_shows_the_gaps() -> None:
    points = [(START, "1"), (START + 60, "1"), (START + 120, "3"), (START + 240, "2"), (START + 240, "1")]
    points += [(START + 300, "NaN"), (START + 360, "-1"), (START + 420, "many")]
    seen = replica_seconds(points, START, START + 450, 60)  # 8 steps, the last one 30 s long
    # 1 + 1 + 3 replicas for 60 s each, two series summed to 3 at +240; +180 missing, the rest bad
    assert seen.replica_seconds == Decimal(60 * (1 + 1 + 3 + 3))
    assert seen.covered_seconds == Decimal(240)
    assert seen.gaps == 4 and seen.peak == 3
    assert seen.mean == Decimal(2)
    assert seen.last == Decimal(3)  # the count at the last step with one (+240), for the hourly gauge


def test_a_cut_last_step_and_points_outside_the_window() -> None:
    points = [(START - 60, "9"), (START, "2"), (START + 60, "2.5"), (START + 120, "7")]
    seen = replica_seconds(points, START, START + 90, 60)
    assert seen.replica_seconds == Decimal(2 * 60) + Decimal("2.5") * 30
    assert (seen.covered_seconds, seen.gaps, seen.peak) == (Decimal(90), 0, 3)


def test_no_data_is_all_gap() -> None:
    seen = replica_seconds([], START, START + 600, 60)
    assert (seen.replica_seconds, seen.covered_seconds, seen.gaps) == (Decimal(0), Decimal(0), 10)
    assert seen.last is None


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(0, 2**20)), min_size=1, max_size=200), st.integers(1, 600))
def test_constant_steps_sum_exactly(counts: list[int | None], step: int) -> None:
    end = START + step * len(counts)
    times = grid(START, end, step)
    points = [(t, str(c)) for t, c in zip(times, counts, strict=True) if c is not None]
    seen = replica_seconds(points, START, end, step)
    assert seen.replica_seconds == sum(Decimal(c * step) for c in counts if c is not None)
    assert seen.gaps == counts.count(None)


def test_allocation_of_varying_replicas_balances_exactly() -> None:
    """Provisioned from the replica-seconds (not replicas x window); used + idle = provisioned."""
    profile = HardwareProfile("h200", Decimal("3.72"), "NVIDIA H200", 1, 16, Decimal(128))
    seen = replica_seconds([(START, "1"), (START + 60, "3"), (START + 120, "2")], START, START + 180, 60)
    intervals = IntervalSet(START, START + 180)
    intervals.add(START + 10, START + 50, 0)
    intervals.add(START + 70, START + 170, 1)
    usage = DeploymentUsage("fraud", profile, seen.peak, 180.0, busy_time(intervals, seen.peak), [("a",), ("b",)],
                            replica_seconds=seen.replica_seconds)  # fmt: skip
    result = allocate([usage], 1)
    assert result.provisioned_usd == money(Decimal("3.72"), Decimal(360)) == sum(r.total_usd for r in result.rows)
    assert result.provisioned_seconds == 360.0
    assert result.idle_usd == result.provisioned_usd - money(Decimal("3.72"), Decimal(140))
