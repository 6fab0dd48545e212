"""A budget created at run time counts each request once, whatever its timing (issue 6): requests
admitted on two replicas right after the announcement (with a hold on the new budget, before its
catch-up cutoff), one admitted before it without a hold, and one started after the cutoff. The
counter must end at the ledger's sum, in process and in Redis. A real SQLite ledger; two admit
stages, each with its own governor, on one counter store."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from costwarden.chain.admit import Admit, StoreHealth
from costwarden.chain.policy import AdmissionPolicy
from costwarden.config.models import Config
from costwarden.domain.budget import Amount, Budget, BudgetScope
from costwarden.domain.record import UsageRecord
from costwarden.domain.report import SpendQuery
from costwarden.ports import CounterStore
from costwarden.services.governor import Governor
from costwarden.storage.memory_counters import MemoryCounters
from costwarden.storage.redis_counters import RedisCounters
from costwarden.storage.sqlite import SQLiteStore
from tests.contract.test_counters import REDIS, drop_namespace, need_redis
from tests.unit.chain.test_admit import IDENTITY, cfg_with, chat, exchange
from tests.unit.governance.test_governor import DAY, Alerts, Lease, ledger
from tests.unit.storage.sample import record

__all__ = ["ledger"]  # the fixture
TEAM = IDENTITY.team


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[CounterStore]:
    if request.param == "memory":
        yield MemoryCounters()
        return
    need_redis()
    namespace = f"cwtest:{uuid.uuid4().hex[:12]}:"
    counters = RedisCounters(REDIS, namespace=namespace)
    try:
        yield counters
    finally:
        await counters.close()
        await drop_namespace(namespace)


class Replica:
    """One gateway: its governor (which loads the stored budgets) and its admit stage."""

    def __init__(self, cfg: Config, counters: CounterStore, ledger: SQLiteStore, stored: list[Budget]) -> None:
        self.cfg, self.ledger = cfg, ledger
        self.policy = AdmissionPolicy([], (), (), 600.0, {})

        async def load() -> list[Budget]:
            return list(stored)

        self.governor = Governor(
            self.policy, counters, ledger, StoreHealth(), Alerts(ledger), Lease(True), 1.0, None,
            budgets=load, rebuild_lag=0.005,
        )  # fmt: skip
        self.stage = Admit(
            self.policy, counters, StoreHealth(), settle_inline=True, reload=self.governor.reload, verify_unplanned=True
        )

    async def serve(self, cost: str, started_at: float | None = None, flush: bool = True) -> UsageRecord:
        """Admit and settle one request; its record (returned) reaches the ledger after the settle."""
        ex = exchange(self.cfg, chat(10), f"r-{uuid.uuid4().hex}")
        if started_at is not None:
            ex.started_at = started_at
        assert await self.stage.enter(ex) is None
        ex.cost = Decimal(cost)
        await self.stage.settle(ex)
        await self.stage.finish(ex)
        done = record(ex.request_id, team=TEAM, started_at=ex.started_at, cost_usd=ex.cost)
        if flush:
            await self.ledger.write([done])
        return done


async def test_a_request_admitted_right_after_a_budget_is_created_counts_once(
    ledger: SQLiteStore, store: CounterStore
) -> None:
    start = DAY.bounds(time.time())[0]
    await ledger.write([record(f"b{i}", team=TEAM, started_at=start + 1, cost_usd=Decimal("0.01")) for i in range(5)])
    stored: list[Budget] = []
    cfg = cfg_with({})
    first, second = Replica(cfg, store, ledger, stored), Replica(cfg, store, ledger, stored)
    for replica in (first, second):
        replica.policy.generation = await store.restore(())
        await replica.governor.refresh_budgets()  # at start: nothing stored yet
    unheld = await second.serve("0.02", flush=False)  # admitted before the budget exists: no hold
    stored.append(Budget("ads-day", BudgetScope.of({"team": TEAM}), DAY, Decimal("100")))
    await first.governor.refresh_budgets(announce=True)  # what the admin API does
    for _ in range(3):
        await first.serve("0.003")  # at once, with a hold, before the catch-up cutoff
    await second.serve("0.004")  # met the new generation: reloaded, held, before the cutoff
    cutoff = max(first.policy._caught_up.values())
    await second.serve("0.005", started_at=cutoff + 0.001)  # after it: its settle counts it
    budget = first.policy.budgets[0]
    settled = Decimal("0.05") + 3 * Decimal("0.003") + Decimal("0.004") + Decimal("0.005")
    assert (await first.governor.view(budget, time.time())).state.spent.usd == settled  # at once, by the settles
    await ledger.write([unheld])  # flushed only now, after the new budget's seed read the ledger
    for replica in (first, second):
        await asyncio.gather(*replica.governor._catching)  # every catch-up, on both replicas
    spent = (await first.governor.view(budget, time.time())).state.spent
    report = await ledger.spend(SpendQuery(group_by=(), start=start, where=(("team", TEAM),), percentiles=False))
    total = sum((row.cost_usd for row in report.rows), Decimal(0))
    assert spent == Amount(total, spent.tokens, 11), (spent, total)
    assert total == Decimal("0.05") + Decimal("0.02") + 3 * Decimal("0.003") + Decimal("0.004") + Decimal("0.005")
    for replica in (first, second):
        await replica.governor.stop()
