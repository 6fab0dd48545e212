"""The degrade loop: the leader steps the hysteresis and saves it; every replica reads it back, so
they switch together; each switch is an alert (fired, then resolved as the same episode) and a count."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from decimal import Decimal

from costwarden.domain.alert import Alert, AlertKind, Condition, Severity
from costwarden.domain.budget import Budget, BudgetScope, BudgetState
from costwarden.domain.variant import DegradeRule, DegradeState
from costwarden.domain.window import Unit, Window
from costwarden.services.budgets import BudgetView
from costwarden.services.degrade import DegradeWatch
from costwarden.storage.variant_state_memory import MemoryVariantState

RULE = DegradeRule(Decimal("0.8"), Decimal("0.6"), 10.0)
BUDGET = Budget("b", BudgetScope.of({}), Window.calendar(Unit.DAY, "UTC"), Decimal(100))


class Alerts:
    def __init__(self) -> None:
        self.sent: list[Alert] = []

    def submit(self, alerts: Sequence[Alert]) -> None:
        self.sent.extend(alerts)

    def record(self, alerts: Sequence[Alert]) -> None:
        raise AssertionError("not used")

    def adopt(self, active: Sequence[Alert]) -> None:
        raise AssertionError("not used")

    def disown(self) -> None:
        raise AssertionError("not used")


class Lease:
    def __init__(self, leading: bool) -> None:
        self.leading = leading

    async def lead(self, now: float) -> bool:
        return self.leading


class Utilisation:
    def __init__(self) -> None:
        self.value = Decimal(0)

    def views(self) -> dict[str, BudgetView]:
        state = BudgetState()
        return {"b": BudgetView(BUDGET, 0.0, 86400.0, state, Decimal(0), self.value, None)}


class Broken(MemoryVariantState):
    async def load(self) -> dict[str, DegradeState]:
        raise ConnectionError("down")


async def test_replicas_switch_together_and_each_switch_is_an_event() -> None:
    shared, spend, alerts = MemoryVariantState(), Utilisation(), Alerts()
    leader = DegradeWatch({"b": RULE}, shared, spend.views, Lease(True), alerts, 1.0)
    follower = DegradeWatch({"b": RULE}, shared, spend.views, Lease(False), Alerts(), 1.0)
    spend.value = Decimal("0.79")
    for watch in (leader, follower):
        await watch.tick(100.0)
    assert leader.degraded == follower.degraded == {}
    spend.value = Decimal("0.8")
    await leader.tick(101.0)
    await follower.tick(101.0)
    assert leader.degraded == follower.degraded == {"b": 1}
    spend.value = Decimal("0.5")
    for now in (102.0, 111.0):
        await leader.tick(now)
        await follower.tick(now)
        assert follower.degraded == {"b": 1}  # held: not yet 10 s below 0.6
    await leader.tick(112.0)
    await follower.tick(112.0)
    assert leader.degraded == follower.degraded == {}
    assert leader.switches == {("b", "degraded"): 1, ("b", "recovered"): 1}
    assert follower.switches == {}  # only the leader steps, so every switch is announced once
    fired, resolved = alerts.sent
    assert fired.kind is AlertKind.VARIANT_DEGRADED and fired.firing and fired.started_at == 101.0
    assert resolved.id == fired.id and resolved.resolved_at == 112.0  # the same episode, resolved


async def test_a_store_that_fails_keeps_the_last_known_state() -> None:
    spend = Utilisation()
    spend.value = Decimal(1)
    working = DegradeWatch({"b": RULE}, MemoryVariantState(), spend.views, Lease(True), None, 1.0)
    await working.tick(0.0)
    assert working.degraded == {"b": 1}
    broken = DegradeWatch({"b": RULE}, Broken(), spend.views, Lease(True), None, 1.0)
    broken.degraded = working.degraded
    await broken.tick(1.0)
    assert broken.degraded == {"b": 1}


async def test_a_spike_in_scope_degrades_a_budget_that_asks_for_it() -> None:
    spike = Alert.start(
        Condition.of(AlertKind.COST_SPIKE, {"team": "search"}, Severity.WARNING, Decimal(9), Decimal(1), "spike"), 5.0
    )
    shadow = replace(spike, labels=(("shadow", "true"), ("team", "search")))

    def firing(alerts: list[Alert]) -> Callable[[], Awaitable[list[Alert]]]:
        async def read() -> list[Alert]:
            return alerts

        return read

    spend = Utilisation()  # 0 %: only the spike can degrade
    for rule, alerts, degraded in (
        (replace(RULE, on_spike=True), [spike], {"b": 1}),
        (replace(RULE, on_spike=True), [shadow], {}),  # a shadow spike notifies nobody, moves nothing
        (RULE, [spike], {}),  # the budget did not ask for it
    ):
        watch = DegradeWatch(
            {"b": rule}, MemoryVariantState(), spend.views, Lease(True), None, 1.0,
            firing=firing(alerts),
        )  # fmt: skip
        await watch.tick(10.0)
        assert watch.degraded == degraded, (rule, alerts)


async def test_a_restarted_replica_neither_fires_the_episode_twice_nor_leaves_it_firing() -> None:
    # The state was in this process only (no Redis) and is gone; the episode is still firing in the store.
    condition = Condition.of(AlertKind.VARIANT_DEGRADED, {"budget": "b"}, Severity.WARNING, Decimal(1), Decimal(1), "")
    stored = Alert.start(condition, 50.0)
    spend, alerts = Utilisation(), Alerts()

    async def firing() -> list[Alert]:
        return [stored]

    watch = DegradeWatch({"b": RULE}, MemoryVariantState(), spend.views, Lease(True), alerts, 1.0, firing=firing)
    spend.value = Decimal("0.9")
    await watch.tick(100.0)
    assert watch.degraded == {"b": 1} and alerts.sent == []  # already firing: not again
    spend.value = Decimal("0.1")
    await watch.tick(101.0)
    await watch.tick(111.0)
    [resolved] = alerts.sent
    assert resolved.id == stored.id and resolved.resolved_at == 111.0



async def test_levels_are_shared_and_one_alert_episode_spans_them() -> None:
    rule = DegradeRule(Decimal("0.8"), Decimal("0.6"), 10.0, deeper=((Decimal("0.95"), Decimal("0.85")),))
    shared, spend, alerts = MemoryVariantState(), Utilisation(), Alerts()
    leader = DegradeWatch({"b": rule}, shared, spend.views, Lease(True), alerts, 1.0)
    follower = DegradeWatch({"b": rule}, shared, spend.views, Lease(False), Alerts(), 1.0)
    for value, now, level in (("0.8", 100.0, 1), ("0.96", 101.0, 2), ("0.7", 102.0, 2), ("0.7", 112.0, 1)):
        spend.value = Decimal(value)
        await leader.tick(now)
        await follower.tick(now)
        assert leader.degraded == follower.degraded == {"b": level}, (value, now)
    spend.value = Decimal("0.5")
    await leader.tick(113.0)
    await leader.tick(123.0)
    await follower.tick(123.0)
    assert leader.degraded == follower.degraded == {}
    assert leader.switches == {
        ("b", "degraded"): 1, ("b", "deeper"): 1, ("b", "shallower"): 1, ("b", "recovered"): 1
    }  # fmt: skip
    fired, resolved = alerts.sent  # one episode from the first variant back to the original
    assert fired.started_at == 100.0 and resolved.id == fired.id and resolved.resolved_at == 123.0
