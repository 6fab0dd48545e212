"""Degrade to cheaper variants with hysteresis: when a budget is degraded, how far, and when it recovers.

Pure: utilisation (settled spend / limit, 1 = 100 %) and the clock come in, the next state and the
switch (if any) go out. A rule has one or more levels, each a pair of thresholds: level k is reached
when utilisation reaches its `at` (level 1 moves requests to a deployment's first variant, level 2
to its second, and so on down its ordered list); a level is left, one step back towards the
original, only once utilisation has stayed below that level's `recover_below` for `hold_seconds`
without a break, so a budget hovering around a threshold does not flap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class Switch(StrEnum):
    DEGRADED = "degraded"  # from the original to a variant
    DEEPER = "deeper"  # to a later (cheaper) variant while degraded
    SHALLOWER = "shallower"  # back one variant, still degraded
    RECOVERED = "recovered"  # back to the original


@dataclass(frozen=True, slots=True)
class DegradeRule:
    """Thresholds as fractions of the limit (0.8 = 80 %): the first level's `at` and `recover_below`
    (< `at`), then `deeper` levels as (at, recover_below) pairs, each `at` above the one before."""

    at: Decimal
    recover_below: Decimal
    hold_seconds: float
    on_forecast: bool = False  # a forecast overrun of the budget degrades it too (see `step`)
    on_spike: bool = False  # so does a cost or volume spike alert within the budget's scope
    deeper: tuple[tuple[Decimal, Decimal], ...] = ()

    def __post_init__(self) -> None:
        previous = Decimal(0)
        for level, (at, recover_below) in enumerate(self.levels, 1):
            if not Decimal(0) < recover_below < at:
                raise ValueError(f"recover_below ({recover_below}) must be positive and below at ({at})")
            if at <= previous:
                raise ValueError(f"level {level}'s at ({at}) must be above level {level - 1}'s ({previous})")
            previous = at
        if self.hold_seconds < 0:
            raise ValueError(f"hold_seconds must not be negative, got {self.hold_seconds}")

    @property
    def levels(self) -> tuple[tuple[Decimal, Decimal], ...]:
        """Every level's (at, recover_below), the first one first."""
        return ((self.at, self.recover_below), *self.deeper)


@dataclass(frozen=True, slots=True)
class DegradeState:
    """One budget's state: its level (0: not degraded; k: requests go to the k-th variant), since
    when it is degraded (or not: a change of level keeps it), and since when utilisation has been
    below the level's `recover_below`."""

    level: int = 0
    changed_at: float = 0.0
    low_since: float | None = None  # while degraded: when utilisation last fell below recover_below

    @property
    def degraded(self) -> bool:
        return self.level > 0


NORMAL = DegradeState()


def step(
    rule: DegradeRule, state: DegradeState, utilisation: Decimal, now: float, alerting: bool = False
) -> tuple[DegradeState, Switch | None]:
    """The state after observing `utilisation` at `now`, and the switch it makes (None if none).

    Utilisation past several levels' `at` goes straight to the deepest of them; recovery goes back
    one level per hold. `alerting`: an alert on the budget's scope (a forecast overrun, a spike)
    degrades it to the first level at least, as the threshold does, and holds off recovering from
    that level while it lasts."""
    levels = rule.levels
    if state.level > len(levels):  # the config lost levels since the state was saved
        state = DegradeState(len(levels), state.changed_at, None)
    reached = sum(1 for at, _ in levels if utilisation >= at)
    floor = max(reached, 1 if alerting else 0)
    if floor > state.level:
        if not state.degraded:
            return DegradeState(floor, now, None), Switch.DEGRADED
        return DegradeState(floor, state.changed_at, None), Switch.DEEPER
    if not state.degraded:
        return state, None
    _, recover_below = levels[state.level - 1]
    if utilisation >= recover_below or floor >= state.level:
        held = DegradeState(state.level, state.changed_at, None)  # the hold (if any) restarts
        return (held, None) if state.low_since is not None else (state, None)
    low_since = state.low_since if state.low_since is not None else now
    if now - low_since >= rule.hold_seconds:
        if state.level == 1:
            return DegradeState(0, now, None), Switch.RECOVERED
        return DegradeState(state.level - 1, state.changed_at, None), Switch.SHALLOWER
    return DegradeState(state.level, state.changed_at, low_since), None


def within_scope(scope: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether an alert labelled `labels` (e.g. a spike of `{team: search}`) concerns a budget of
    `scope`: no label contradicts the scope (a scope that does not name a dimension covers it all)."""
    return all(scope.get(name, value) == value for name, value in labels.items())
