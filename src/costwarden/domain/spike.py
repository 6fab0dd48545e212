"""Spike detection on one series (a deployment's or team's request count or cost per window):
a learned EWMA baseline, hour-of-week seasonality once it has history, a z-score over
consecutive windows, and a dollar floor so that only spikes that cost money alert.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from decimal import Decimal

from costwarden.domain.money import ZERO, quantize

HOURS_PER_WEEK = 168
_MONDAY_OFFSET_HOURS = 72  # 1970-01-01 (Unix second 0) was a Thursday
_SECONDS_PER_WEEK = 604_800


@dataclass(frozen=True, slots=True)
class SpikeDetector:
    """How a series is judged. Values are per window of `window_seconds`; USD amounts are Decimal.

    A window is anomalous when its z-score against the baseline is at least `z_threshold` and its
    dollar impact (observed - expected, times `usd_per_unit`) is at least `min_impact_usd`. An
    alert fires after `consecutive` anomalous windows and resolves after `clear_windows` normal
    ones. Nothing alerts before `warmup_windows` windows were seen. The hour-of-week baseline is
    used once its slot has values from `seasonal_weeks` distinct weeks.
    """

    window_seconds: float = 300.0
    alpha: float = 0.1
    seasonal_alpha: float = 0.2
    z_threshold: float = 3.0
    consecutive: int = 2
    clear_windows: int = 2
    warmup_windows: int = 12
    seasonal_weeks: int = 2
    min_impact_usd: Decimal = Decimal(10)
    min_relative_std: float = 0.1  # a flat series still has this spread, relative to its mean
    shadow: bool = False

    def window_of(self, instant: float) -> float:
        """The start (Unix seconds) of the window containing `instant`, aligned to the epoch."""
        return math.floor(instant / self.window_seconds) * self.window_seconds


@dataclass(frozen=True, slots=True)
class Moments:
    """An exponentially weighted mean and variance of the values seen."""

    mean: float = 0.0
    var: float = 0.0
    count: int = 0

    def std(self, relative_floor: float) -> float:
        return max(math.sqrt(self.var), relative_floor * abs(self.mean), 1e-12)

    def update(self, value: float, alpha: float) -> Moments:
        if self.count == 0:
            return Moments(value, 0.0, 1)
        delta = value - self.mean
        return Moments(self.mean + alpha * delta, (1 - alpha) * (self.var + alpha * delta * delta), self.count + 1)

    def clamp(self, value: float, deviations: float, relative_floor: float) -> float:
        """`value` limited to mean +/- `deviations` standard deviations: a spike then moves the
        baseline slowly, while a lasting level shift is still learned."""
        if self.count == 0:
            return value
        spread = deviations * self.std(relative_floor)
        return min(max(value, self.mean - spread), self.mean + spread)


# One hour of the week: its baseline (a Moments' mean, var and count), how many distinct weeks fed
# it and the last of them. A plain tuple of numbers, which the garbage collector stops tracking once
# it has seen it: a series keeps 168 of them as long as the gateway runs. As objects (Slot, Moments),
# 1,040 series (500 teams and 20 deployments) held 350,000 that every full collection walked, ~45 ms
# of the GIL each time (bench/probe_heap.py, issue 14).
Slot = tuple[float, float, int, int, int]
_NO_SLOTS: tuple[Slot, ...] = ((0.0, 0.0, 0, 0, -1),) * HOURS_PER_WEEK  # no seasonal history yet


@dataclass(frozen=True, slots=True)
class SeriesState:
    """Everything the detector keeps per series; `slots` is empty or one per hour of the week."""

    overall: Moments = Moments()
    slots: tuple[Slot, ...] = ()
    last_window: float | None = None
    streak: int = 0  # consecutive anomalous windows
    calm: int = 0  # consecutive normal windows while firing
    firing: bool = False


@dataclass(frozen=True, slots=True)
class SpikeDecision:
    """The verdict on one window. `fire` / `resolve` are transitions of the alert; `shadow` says the
    detector only records, so nothing is to be notified. `ignored`: a repeated or older window."""

    window_start: float
    at: float
    observed: float
    expected: float
    z: float
    impact_usd: Decimal
    seasonal: bool
    warming_up: bool
    anomalous: bool
    firing: bool
    fire: bool
    resolve: bool
    shadow: bool
    ignored: bool = False

    @property
    def notify(self) -> bool:
        return (self.fire or self.resolve) and not self.shadow


def hour_of_week(instant: float) -> int:
    """0 for Monday 00:00-01:00 UTC, up to 167 for Sunday 23:00-24:00 UTC."""
    return (math.floor(instant) // 3600 + _MONDAY_OFFSET_HOURS) % HOURS_PER_WEEK


def week_index(instant: float) -> int:
    """Weeks (Monday to Monday, UTC) since the Unix epoch."""
    return (math.floor(instant) + _MONDAY_OFFSET_HOURS * 3600) // _SECONDS_PER_WEEK


def observe(
    detector: SpikeDetector,
    state: SeriesState,
    value: float,
    window_start: float,
    now: float,
    usd_per_unit: Decimal = Decimal(1),
) -> tuple[SeriesState, SpikeDecision]:
    """Judge the window starting at `window_start` (Unix seconds) with total `value`, at `now`.

    Call once per window in order, including empty windows (value 0). For a cost series `value`
    is USD and `usd_per_unit` 1; for a request series pass the window's mean cost per request.
    """
    if state.last_window is not None and window_start <= state.last_window:
        ignored = SpikeDecision(
            window_start=window_start, at=now, observed=value, expected=0.0, z=0.0, impact_usd=ZERO,
            seasonal=False, warming_up=False, anomalous=False, firing=state.firing, fire=False,
            resolve=False, shadow=detector.shadow, ignored=True,
        )  # fmt: skip
        return state, ignored
    slots = state.slots or _NO_SLOTS
    hour, week = hour_of_week(window_start), week_index(window_start)
    mean, var, count, weeks, last_week = slots[hour]
    slot = Moments(mean, var, count)
    seasonal = weeks >= detector.seasonal_weeks
    baseline = slot if seasonal else state.overall
    expected = baseline.mean
    z = (value - expected) / baseline.std(detector.min_relative_std)
    impact = quantize(Decimal(repr(value - expected)) * usd_per_unit)
    warming_up = state.overall.count < detector.warmup_windows
    anomalous = not warming_up and z >= detector.z_threshold and impact >= detector.min_impact_usd

    streak = state.streak + 1 if anomalous else 0
    calm = state.calm + 1 if state.firing and not anomalous else 0
    fire = not state.firing and streak >= detector.consecutive
    resolve = state.firing and calm >= detector.clear_windows
    firing = fire or (state.firing and not resolve)

    def learn(moments: Moments, alpha: float) -> Moments:
        if warming_up:
            return moments.update(value, alpha)
        clamped = moments.clamp(value, detector.z_threshold, detector.min_relative_std)
        return moments.update(clamped, alpha)

    learned = learn(slot, detector.seasonal_alpha)
    new_slot = (learned.mean, learned.var, learned.count, weeks + (week != last_week), week)
    new_state = SeriesState(
        overall=learn(state.overall, detector.alpha),
        slots=(*slots[:hour], new_slot, *slots[hour + 1 :]),
        last_window=window_start,
        streak=streak,
        calm=0 if resolve else calm,
        firing=firing,
    )
    decision = SpikeDecision(
        window_start=window_start, at=now, observed=value, expected=expected, z=z, impact_usd=impact,
        seasonal=seasonal, warming_up=warming_up, anomalous=anomalous, firing=firing, fire=fire,
        resolve=resolve, shadow=detector.shadow,
    )  # fmt: skip
    return new_state, decision


def reset_alert(state: SeriesState) -> SeriesState:
    """Forget a firing alert (e.g. after the operator acknowledged a level change); keep the baseline."""
    return replace(state, streak=0, calm=0, firing=False)
