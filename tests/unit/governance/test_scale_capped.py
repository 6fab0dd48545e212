"""The governor's `scale_capped` alert (services.scaling via the governor's tick): one episode while
the cap binds, resolved when it no longer does; left as it is on a tick that could not evaluate it
(an error, or no budget views), never resolved by mistake."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path

from costwarden.chain.admit import StoreHealth
from costwarden.chain.policy import AdmissionPolicy
from costwarden.domain.alert import AlertKind, Condition
from costwarden.domain.scaling import Room, ScalingRule, decide
from costwarden.services.budgets import BudgetView
from costwarden.services.governor import Governor
from costwarden.services.scaling import capped_condition
from costwarden.storage.memory_counters import MemoryCounters
from costwarden.storage.sqlite import SQLiteStore
from tests.unit.governance.test_governor import NOW, Alerts, Lease, team_budget

RULE = ScalingRule(1, 10, Decimal(1))


class Caps:
    """What services.scaling would say: capped at `cap` while demand exceeds it; raises on demand."""

    def __init__(self) -> None:
        self.demand, self.cap, self.broken = 6, 3, False
        self.seen: list[Mapping[str, BudgetView]] = []

    async def __call__(self, views: Mapping[str, BudgetView], now: float) -> list[Condition]:
        self.seen.append(views)
        if self.broken:
            raise RuntimeError("the ledger is down")
        room = Room("search-day", Decimal(self.cap), Decimal(3600))  # $1 a replica-hour, an hour left
        decision = decide(RULE, self.demand, Decimal(1), [room])
        return [capped_condition("fraud", decision)] if decision.capped else []


async def test_one_episode_while_the_cap_binds(tmp_path: Path) -> None:
    ledger = SQLiteStore(str(tmp_path / "ledger.db"))
    await ledger.open()
    try:
        budget = team_budget("10")
        caps = Caps()
        alerts = Alerts(ledger)
        policy = AdmissionPolicy([budget], (), (), 600.0, {})
        gov = Governor(policy, MemoryCounters(), ledger, StoreHealth(), alerts, Lease(True), 1.0, None, scaling=caps)
        await gov.rebuild(NOW)
        for tick in range(3):
            await gov.step(NOW + tick)
        [fired] = alerts.sent
        assert fired.kind is AlertKind.SCALE_CAPPED and dict(fired.labels) == {"deployment": "fraud"}
        assert (fired.observed, fired.threshold) == (Decimal(6), Decimal(3)) and "can pay for 3" in fired.summary
        assert set(caps.seen[0]) == {"search-day"}  # the tick's budget views
        caps.broken = True
        await gov.step(NOW + 3)  # not evaluated: the episode stays
        assert len(alerts.sent) == 1 and gov.active[0].firing
        caps.broken, caps.cap = False, 8  # more budget: the cap no longer binds
        await gov.step(NOW + 4)
        resolved = alerts.sent[-1]
        assert len(alerts.sent) == 2 and resolved.id == fired.id and resolved.resolved_at == NOW + 4
    finally:
        await ledger.close()
