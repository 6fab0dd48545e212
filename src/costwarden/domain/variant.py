"""Degrade to a cheaper variant with hysteresis: when a budget is degraded, and when it recovers.

Pure: utilisation (settled spend / limit, 1 = 100 %) and the clock come in, the next state and the
switch (if any) go out. A budget degrades when its utilisation reaches `at`; it recovers only once
utilisation has stayed below `recover_below` for `hold_seconds` without a break, so a budget
hovering around the threshold does not flap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class Switch(StrEnum):
    DEGRADED = "degraded"
    RECOVERED = "recovered"


@dataclass(frozen=True, slots=True)
class DegradeRule:
    """Thresholds as fractions of the limit (0.8 = 80 %); `recover_below` < `at`."""

    at: Decimal
    recover_below: Decimal
    hold_seconds: float
    on_forecast: bool = False  # a forecast overrun of the budget degrades it too (see `step`)
    on_spike: bool = False  # so does a cost or volume spike alert within the budget's scope

    def __post_init__(self) -> None:
        if not Decimal(0) < self.recover_below < self.at:
            raise ValueError(f"recover_below ({self.recover_below}) must be positive and below at ({self.at})")
        if self.hold_seconds < 0:
            raise ValueError(f"hold_seconds must not be negative, got {self.hold_seconds}")


@dataclass(frozen=True, slots=True)
class DegradeState:
    """One budget's state: degraded or not, since when, and since when utilisation has been low."""

    degraded: bool = False
    changed_at: float = 0.0
    low_since: float | None = None  # while degraded: when utilisation last fell below recover_below


NORMAL = DegradeState()


def step(
    rule: DegradeRule, state: DegradeState, utilisation: Decimal, now: float, alerting: bool = False
) -> tuple[DegradeState, Switch | None]:
    """The state after observing `utilisation` at `now`, and the switch it makes (None if none).

    `alerting`: an alert on the budget's scope (a forecast overrun) degrades it as the threshold
    does, and holds off recovery while it lasts."""
    if not state.degraded:
        if utilisation >= rule.at or alerting:
            return DegradeState(True, now, None), Switch.DEGRADED
        return state, None
    if utilisation >= rule.recover_below or alerting:
        return (DegradeState(True, state.changed_at, None), None) if state.low_since is not None else (state, None)
    low_since = state.low_since if state.low_since is not None else now
    if now - low_since >= rule.hold_seconds:
        return DegradeState(False, now, None), Switch.RECOVERED
    return DegradeState(True, state.changed_at, low_since), None


def within_scope(scope: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether an alert labelled `labels` (e.g. a spike of `{team: search}`) concerns a budget of
    `scope`: no label contradicts the scope (a scope that does not name a dimension covers it all)."""
    return all(scope.get(name, value) == value for name, value in labels.items())
