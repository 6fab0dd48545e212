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


LEVELS = DegradeRule(Decimal("0.8"), Decimal("0.6"), 300.0, deeper=((Decimal("0.95"), Decimal("0.85")),))


def test_levels_walk_the_ordered_variants_and_come_back_one_hold_at_a_time() -> None:
    state, switch = step(LEVELS, NORMAL, Decimal("0.8"), 0)
    assert (state.level, switch) == (1, Switch.DEGRADED)
    state, switch = step(LEVELS, state, Decimal("0.95"), 10)
    assert (state.level, switch, state.changed_at) == (2, Switch.DEEPER, 0)  # degraded since 0
    state, switch = step(LEVELS, state, Decimal("0.9"), 20)  # between level 2's thresholds: stays
    assert (state.level, switch) == (2, None)
    state, switch = step(LEVELS, state, Decimal("0.84"), 30)  # below 0.85 from 30 on
    state, switch = step(LEVELS, state, Decimal("0.84"), 329)
    assert (state.level, switch) == (2, None)
    state, switch = step(LEVELS, state, Decimal("0.84"), 330)
    assert (state.level, switch, state.changed_at) == (1, Switch.SHALLOWER, 0)
    state, switch = step(LEVELS, state, Decimal("0.5"), 340)  # level 1's own hold starts now
    state, switch = step(LEVELS, state, Decimal("0.5"), 639)
    assert (state.level, switch) == (1, None)
    state, switch = step(LEVELS, state, Decimal("0.5"), 640)
    assert (state.level, switch) == (0, Switch.RECOVERED)
    # Past both thresholds at once: straight to the deepest level reached.
    state, switch = step(LEVELS, NORMAL, Decimal("1.2"), 700)
    assert (state.level, switch) == (2, Switch.DEGRADED)


def test_levels_need_rising_thresholds() -> None:
    with pytest.raises(ValueError, match="above level 1"):
        DegradeRule(Decimal("0.8"), Decimal("0.6"), 1, deeper=((Decimal("0.8"), Decimal("0.7")),))
    with pytest.raises(ValueError, match="recover_below"):
        DegradeRule(Decimal("0.8"), Decimal("0.6"), 1, deeper=((Decimal("0.9"), Decimal("0.9")),))


def test_a_state_deeper_than_the_rule_is_held_at_its_last_level() -> None:
    state, switch = step(RULE, DegradeState(3, 5.0), Decimal("0.9"), 10)  # the config lost two levels
    assert (state.level, switch) == (1, None)


def test_an_alert_holds_the_first_level_only() -> None:
    state, _ = step(LEVELS, NORMAL, Decimal("0.99"), 0, alerting=True)
    assert state.level == 2
    state, switch = step(LEVELS, state, Decimal("0.1"), 10, alerting=True)
    state, switch = step(LEVELS, state, Decimal("0.1"), 310, alerting=True)
    assert (state.level, switch) == (1, Switch.SHALLOWER)
    state, switch = step(LEVELS, state, Decimal("0.1"), 2000, alerting=True)
    assert (state.level, switch) == (1, None)


@given(st.lists(st.tuples(utilisations, gaps, st.booleans()), max_size=80))
def test_levels_follow_their_thresholds_and_fall_one_at_a_time(
    observations: list[tuple[Decimal, float, bool]],
) -> None:
    state, now = NORMAL, 0.0
    for utilisation, gap, alerting in observations:
        now += gap
        before = state
        state, switch = step(LEVELS, state, utilisation, now, alerting)
        reached = sum(utilisation >= at for at, _ in LEVELS.levels)
        assert state.level >= max(reached, int(alerting))  # never shallower than the thresholds say
        if state.level > before.level:
            assert state.level == max(reached, int(alerting))  # straight to the deepest level reached
            assert switch is (Switch.DEGRADED if before.level == 0 else Switch.DEEPER)
        elif state.level < before.level:
            assert state.level == before.level - 1  # one level per hold
            assert utilisation < LEVELS.levels[before.level - 1][1] and before.low_since is not None
            assert now - before.low_since >= LEVELS.hold_seconds
            assert switch is (Switch.RECOVERED if state.level == 0 else Switch.SHALLOWER)
        else:
            assert switch is None
