"""Degrade hysteresis: no flapping, recovery only after a continuous hold below the lower threshold."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from costwarden.domain.variant import NORMAL, DegradeRule, DegradeState, Switch, step, within_scope

RULE = DegradeRule(Decimal("0.8"), Decimal("0.6"), 300.0)
utilisations = st.decimals(min_value=0, max_value=2, places=3, allow_nan=False, allow_infinity=False)
gaps = st.floats(min_value=0, max_value=600, allow_nan=False)


def test_degrades_at_the_threshold_and_recovers_after_the_hold() -> None:
    state, switch = step(RULE, NORMAL, Decimal("0.79"), 0)
    assert (state, switch) == (NORMAL, None)
    state, switch = step(RULE, state, Decimal("0.8"), 10)
    assert switch is Switch.DEGRADED and state.degraded
    state, switch = step(RULE, state, Decimal("0.5"), 20)  # low from 20 on
    assert switch is None and state.degraded
    state, switch = step(RULE, state, Decimal("0.7"), 100)  # above recover_below: the hold restarts
    state, switch = step(RULE, state, Decimal("0.5"), 110)
    state, switch = step(RULE, state, Decimal("0.5"), 409)
    assert switch is None and state.degraded
    state, switch = step(RULE, state, Decimal("0.5"), 410)
    assert switch is Switch.RECOVERED and not state.degraded and state.changed_at == 410


def test_a_rule_needs_recover_below_under_at() -> None:
    with pytest.raises(ValueError, match="recover_below"):
        DegradeRule(Decimal("0.6"), Decimal("0.6"), 1)


@given(st.lists(st.tuples(utilisations, gaps), max_size=60))
def test_switches_alternate_and_follow_the_thresholds(observations: list[tuple[Decimal, float]]) -> None:
    state, now = NORMAL, 0.0
    last: Switch | None = None
    for utilisation, gap in observations:
        now += gap
        before = state
        state, switch = step(RULE, state, utilisation, now)
        if switch is not None:
            assert switch is not last  # degraded, recovered, degraded, ...
            last = switch
        if switch is Switch.DEGRADED:
            assert utilisation >= RULE.at and not before.degraded
        if switch is Switch.RECOVERED:
            # Recovery only after a continuous stretch below recover_below lasting the hold.
            assert utilisation < RULE.recover_below and before.low_since is not None
            assert now - before.low_since >= RULE.hold_seconds or RULE.hold_seconds == 0
        assert state.degraded == (switch is Switch.DEGRADED or (before.degraded and switch is None))


@given(st.lists(st.tuples(st.decimals(min_value="0.61", max_value="0.79", places=3), gaps), max_size=40))
def test_between_the_thresholds_nothing_ever_switches(observations: list[tuple[Decimal, float]]) -> None:
    for start in (NORMAL, DegradeState(True, 0.0)):
        state, now = start, 0.0
        for utilisation, gap in observations:
            now += gap
            state, switch = step(RULE, state, utilisation, now)
            assert switch is None and state.degraded == start.degraded


def test_an_alert_degrades_and_holds_off_recovery_while_it_lasts() -> None:
    state, switch = step(RULE, NORMAL, Decimal("0.1"), 0, alerting=True)
    assert switch is Switch.DEGRADED
    state, switch = step(RULE, state, Decimal("0.1"), 1000, alerting=True)
    assert switch is None and state.low_since is None  # low utilisation, but the alert holds it
    state, switch = step(RULE, state, Decimal("0.1"), 1001)
    state, switch = step(RULE, state, Decimal("0.1"), 1301)
    assert switch is Switch.RECOVERED


@pytest.mark.parametrize(
    ("scope", "labels", "within"),
    [
        ({}, {"team": "search"}, True),  # a budget on everything covers every spike
        ({"team": "search"}, {"team": "search"}, True),
        ({"team": "search"}, {"team": "ads"}, False),
        ({"team": "search", "deployment": "chat"}, {"deployment": "chat"}, True),
        ({"team": "search", "deployment": "chat"}, {"deployment": "iris"}, False),
    ],
)
def test_a_spike_concerns_a_budget_when_no_label_contradicts_its_scope(
    scope: dict[str, str], labels: dict[str, str], within: bool
) -> None:
    assert within_scope(scope, labels) is within
