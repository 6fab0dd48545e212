"""Spike detection: one alert per sustained burst that costs money; none below the dollar floor,
during warm-up, or for a daily pattern the seasonal baseline has learned; shadow mode is flagged."""

from __future__ import annotations

import gc
import random
from dataclasses import replace
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from costwarden.domain.spike import (
    HOURS_PER_WEEK,
    SeriesState,
    SpikeDecision,
    SpikeDetector,
    hour_of_week,
    observe,
    reset_alert,
    week_index,
)

FAST = settings(max_examples=60, deadline=None, database=None)
MONDAY = 1_749_427_200.0  # 2025-06-09T00:00:00Z
DETECTOR = SpikeDetector(window_seconds=300.0, min_impact_usd=Decimal(10), warmup_windows=12)


def replay(
    detector: SpikeDetector, values: list[float], usd_per_unit: Decimal = Decimal(1), start: float = MONDAY
) -> list[SpikeDecision]:
    state = SeriesState()
    decisions = []
    for index, value in enumerate(values):
        window_start = start + index * detector.window_seconds
        state, decision = observe(
            detector, state, value, window_start, window_start + detector.window_seconds, usd_per_unit
        )
        decisions.append(decision)
    return decisions


def noisy(level: float, count: int, seed: int, spread: float = 0.05) -> list[float]:
    rng = random.Random(seed)
    return [level * (1 + rng.uniform(-spread, spread)) for _ in range(count)]


@FAST
@given(
    seed=st.integers(0, 10_000),
    level=st.sampled_from([20.0, 100.0, 1000.0]),
    ratio=st.sampled_from([3.0, 5.0, 20.0]),
    burst=st.integers(2, 60),
)
def test_a_sustained_burst_above_the_floor_alerts_exactly_once(
    seed: int, level: float, ratio: float, burst: int
) -> None:
    values = noisy(level, 40, seed) + noisy(level * ratio, burst, seed + 1) + noisy(level, 40, seed + 2)
    decisions = replay(DETECTOR, values)
    fired = [d for d in decisions if d.fire]
    assert len(fired) == 1
    assert 40 < decisions.index(fired[0]) < 40 + burst  # within the burst, after two windows
    assert fired[0].impact_usd >= DETECTOR.min_impact_usd and fired[0].notify
    assert sum(d.resolve for d in decisions) == 1 and not decisions[-1].firing


@FAST
@given(seed=st.integers(0, 10_000), ratio=st.sampled_from([3.0, 5.0, 20.0]), burst=st.integers(2, 60))
def test_the_same_ratio_on_a_series_too_cheap_to_matter_does_not_alert(seed: int, ratio: float, burst: int) -> None:
    level = 0.4  # $0.40 per window: even x20 stays under the $10 floor
    values = noisy(level, 40, seed) + noisy(level * ratio, burst, seed + 1) + noisy(level, 40, seed + 2)
    decisions = replay(DETECTOR, values)
    assert not any(d.fire or d.anomalous for d in decisions)
    assert max(d.z for d in decisions) >= DETECTOR.z_threshold  # statistically it is a spike


def test_request_volume_is_priced_by_the_cost_per_request() -> None:
    values = noisy(100, 40, 1) + [500.0] * 5 + noisy(100, 20, 2)
    assert sum(d.fire for d in replay(DETECTOR, values, usd_per_unit=Decimal("0.001"))) == 0  # $0.40
    assert sum(d.fire for d in replay(DETECTOR, values, usd_per_unit=Decimal("0.05"))) == 1  # $20


def test_a_burst_during_warm_up_does_not_alert() -> None:
    values = [100.0] * 5 + [2000.0] * 6 + [100.0] * 30
    decisions = replay(DETECTOR, values)
    assert all(d.warming_up for d in decisions[:12]) and not decisions[12].warming_up
    assert not any(d.fire for d in decisions)


def test_a_single_spiky_window_does_not_alert() -> None:
    values = [*noisy(100, 40, 3), 1000.0, *noisy(100, 40, 4)]
    decisions = replay(DETECTOR, values)
    assert decisions[40].anomalous and not any(d.fire for d in decisions)


def test_shadow_mode_records_the_alert_but_does_not_notify() -> None:
    values = noisy(100, 40, 5) + [1000.0] * 4 + noisy(100, 40, 6)
    decisions = replay(replace(DETECTOR, shadow=True), values)
    fired = [d for d in decisions if d.fire]
    assert len(fired) == 1 and fired[0].shadow and not fired[0].notify
    assert not any(d.notify for d in decisions)


def test_a_daily_pattern_is_learned_per_hour_of_week() -> None:
    hourly = replace(DETECTOR, window_seconds=3600.0, warmup_windows=24)

    def load(hour: int) -> float:
        return 400.0 if 8 <= hour % 24 < 18 else 40.0  # busy office hours, quiet nights

    weeks = 3
    values = [load(h) * (1 + 0.02 * ((h * 7919) % 5 - 2)) for h in range(weeks * 168)]
    values[-30] *= 4  # an evening spike in week 3 (18:00 and 19:00, 40 -> 160)
    values[-29] *= 4
    decisions = replay(hourly, values)
    week_three = decisions[2 * 168 :]
    assert all(d.seasonal for d in week_three) and not any(d.seasonal for d in decisions[:168])
    assert [d.window_start for d in decisions if d.fire] == [decisions[-29].window_start]
    # Against one global baseline the daily swing hides it.
    assert not any(d.fire for d in replay(replace(hourly, seasonal_weeks=10**6), values))


def test_repeated_or_older_windows_are_ignored() -> None:
    state, first = observe(DETECTOR, SeriesState(), 10.0, MONDAY, MONDAY + 300)
    same, again = observe(DETECTOR, state, 99.0, MONDAY, MONDAY + 301)
    assert same == state and again.ignored and not first.ignored


def test_reset_alert_forgets_firing_but_keeps_the_baseline() -> None:
    state = SeriesState()
    for index, value in enumerate(noisy(100, 40, 7) + [1000.0] * 3):
        state, _ = observe(DETECTOR, state, value, MONDAY + index * 300, MONDAY + index * 300)
    assert state.firing
    cleared = reset_alert(state)
    assert not cleared.firing and cleared.overall == state.overall


def test_hours_and_weeks_start_on_monday_utc() -> None:
    assert DETECTOR.window_of(MONDAY + 299.9) == MONDAY and DETECTOR.window_of(MONDAY + 300) == MONDAY + 300
    assert hour_of_week(MONDAY) == 0 and hour_of_week(MONDAY - 1) == 167
    assert hour_of_week(MONDAY + 3600 * 25) == 25
    assert week_index(MONDAY) == week_index(MONDAY + 604_799) == week_index(MONDAY - 1) + 1


def test_a_series_baseline_is_no_work_for_the_garbage_collector() -> None:
    """The gateway keeps each series' state as long as it runs (1,040 series for 500 teams and 20
    deployments), one slot per hour of the week: once the collector has seen them, its slots and
    moments are untracked numbers, not 2 x 168 objects that every full collection walks (issue 14)."""
    state = SeriesState()
    windows_per_hour = int(3600 / DETECTOR.window_seconds)
    for index in range(HOURS_PER_WEEK * windows_per_hour + 5):  # every hour of a week, and on
        start = MONDAY + index * DETECTOR.window_seconds
        state, _ = observe(DETECTOR, state, 10.0 + index % 7, start, start + DETECTOR.window_seconds)
    gc.collect()
    gc.collect()  # a tuple is untracked once the collector saw its items untracked
    assert len({id(slot) for slot in state.slots}) == HOURS_PER_WEEK  # each hour learned
    assert sum(map(gc.is_tracked, [state.slots, *state.slots])) == 0
