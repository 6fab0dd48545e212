"""One suite for the AlertStore port, run against every adapter: SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from costwarden.domain.alert import Alert, AlertKind, Condition, Severity
from costwarden.ports import AlertStore

T0 = 1_800_000_000.0


def budget_alert(budget: str, at: float, observed: str = "81.123456789", threshold: str = "80") -> Alert:
    condition = Condition.of(
        AlertKind.BUDGET_THRESHOLD,
        {"budget": budget, "team": "search", "window": "month@UTC|2026-01-01T00:00:00+00:00"},
        Severity.WARNING,
        Decimal(observed),
        Decimal(threshold),
        f"{budget} passed 80 %",
    )
    return Alert.start(condition, at)


async def test_alerts_round_trip_exactly_newest_first(store: AlertStore) -> None:
    alerts = [budget_alert(f"b{i}", T0 + i) for i in range(5)]
    spike = Alert.start(
        Condition.of(AlertKind.COST_SPIKE, {}, Severity.CRITICAL, Decimal("0.000000001"), Decimal("1E+3")), T0 + 9
    )
    await store.save_alerts([*alerts, spike])
    listed = await store.list_alerts(active_only=False, limit=100)
    assert listed == [spike, *reversed(alerts)]
    assert listed[-1].observed == Decimal("81.123456789") and listed[0].labels == ()
    assert [a.id for a in await store.list_alerts(active_only=False, limit=2)] == [spike.id, alerts[4].id]


async def test_saving_again_updates_the_resolved_time_only(store: AlertStore) -> None:
    first, second = budget_alert("a", T0), budget_alert("b", T0 + 1)
    await store.save_alerts([first, second])
    await store.save_alerts([first, second])  # idempotent
    assert len(await store.list_alerts(active_only=False, limit=10)) == 2
    resolved = replace(first, resolved_at=T0 + 60, observed=Decimal(1), summary="changed")
    await store.save_alerts([resolved])
    assert await store.list_alerts(active_only=True, limit=10) == [second]
    (_, stored) = await store.list_alerts(active_only=False, limit=10)
    assert stored == replace(first, resolved_at=T0 + 60)  # observed and summary as first saved
    await store.save_alerts([first])  # a late replay of the firing version does not un-resolve it
    assert await store.list_alerts(active_only=True, limit=10) == [second]


async def test_a_batch_may_hold_one_alert_twice(store: AlertStore) -> None:
    alert = budget_alert("a", T0)
    await store.save_alerts([alert, replace(alert, resolved_at=T0 + 5)])
    assert await store.list_alerts(active_only=False, limit=10) == [replace(alert, resolved_at=T0 + 5)]
    await store.save_alerts([])
    assert await store.list_alerts(active_only=True, limit=10) == []


async def test_a_new_episode_of_the_same_condition_is_a_new_row(store: AlertStore) -> None:
    old = replace(budget_alert("a", T0), resolved_at=T0 + 10)
    new = budget_alert("a", T0 + 20)
    await store.save_alerts([old, new])
    assert old.fingerprint == new.fingerprint and old.id != new.id
    assert await store.list_alerts(active_only=False, limit=10) == [new, old]
    assert await store.list_alerts(active_only=True, limit=10) == [new]
