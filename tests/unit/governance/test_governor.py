"""The governor's rebuild, budgets set at run time, alerts across lost state and leader failover
(issue 6). A real SQLite ledger; counters in process, or in Redis where state is lost."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from costwarden.chain.admit import StoreHealth
from costwarden.chain.policy import AdmissionPolicy
from costwarden.domain.admission import AdmissionRequest, Settlement
from costwarden.domain.alert import Alert, AlertKind
from costwarden.domain.budget import Amount, Budget, BudgetScope, BudgetState
from costwarden.domain.record import Outcome
from costwarden.domain.window import Unit, Window
from costwarden.ports import CounterStore
from costwarden.services.governor import Governor
from costwarden.storage.memory_counters import MemoryCounters
from costwarden.storage.redis_counters import RedisCounters
from costwarden.storage.sqlite import SQLiteStore
from tests.contract.test_counters import REDIS, drop_namespace, need_redis
from tests.unit.storage.sample import record

NOW = time.time()
DAY = Window.calendar(Unit.DAY)


class Alerts:
    def __init__(self, store: SQLiteStore) -> None:
        self.store, self.sent, self.adopted, self.disowned = store, list[Alert](), list[Alert](), 0
        self.recorded = list[Alert]()  # kept in the store only (shadow mode)

    def submit(self, alerts: Sequence[Alert]) -> None:
        self.sent.extend(alerts)

    def record(self, alerts: Sequence[Alert]) -> None:
        self.recorded.extend(alerts)

    def adopt(self, active: Sequence[Alert]) -> None:
        self.adopted = list(active)

    def disown(self) -> None:
        self.disowned += 1


class Lease:
    def __init__(self, leading: bool) -> None:
        self.leading = leading

    async def lead(self, now: float) -> bool:
        return self.leading


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(str(tmp_path / "ledger.db"))
    await store.open()
    yield store
    await store.close()


def team_budget(limit: str = "1", requests: int | None = None, budget_id: str = "search-day") -> Budget:
    return Budget(budget_id, BudgetScope.of({"team": "search"}), DAY, Decimal(limit), limit_requests=requests)


async def spend(ledger: SQLiteStore, served: int, cost: str, rejected: int = 0) -> None:
    at = DAY.bounds(NOW)[0] + 1
    records = [record(f"s{i}-{uuid.uuid4().hex}", started_at=at, cost_usd=Decimal(cost)) for i in range(served)]
    records += [
        record(
            f"x{i}-{uuid.uuid4().hex}",
            started_at=at,
            cost_usd=Decimal(0),
            outcome=Outcome.REJECTED,
            status=429,
            input_tokens=0,
            output_tokens=0,
        )
        for i in range(rejected)
    ]
    await ledger.write(records)


def governor(
    budgets: list[Budget],
    counters: CounterStore,
    ledger: SQLiteStore,
    lease: Lease | None = None,
    stored: list[Budget] | None = None,
) -> tuple[Governor, Alerts]:
    alerts = Alerts(ledger)
    policy = AdmissionPolicy(budgets, (), (), 600.0, {})

    async def load() -> list[Budget]:
        return list(stored if stored is not None else budgets)

    async def firing() -> list[Alert]:
        return await ledger.list_alerts(True, 100)

    gov = Governor(
        policy,
        counters,
        ledger,
        StoreHealth(),
        alerts,
        lease or Lease(True),
        1.0,
        None,
        budgets=load,
        rebuild_lag=0.5,
        firing=firing,
    )
    return gov, alerts


async def admit(gov: Governor, budget: Budget, usd: str, rid: str) -> bool:
    check = gov._policy.check_for(budget, NOW)
    request = AdmissionRequest(rid, Amount(Decimal(usd), 0, 1), NOW + 60, (check,))
    return (await gov._counters.admit(request, NOW)).admitted


async def test_a_rebuild_counts_only_the_requests_admission_charged(ledger: SQLiteStore) -> None:
    """30 served + 50 refused must not read as 80 of a 60-request budget (defect 3)."""
    budget = team_budget("100", requests=60)
    await spend(ledger, served=30, cost="0.01", rejected=50)
    gov, _ = governor([budget], MemoryCounters(), ledger)
    await gov.rebuild(NOW)
    view = await gov.view(budget, NOW)
    assert view.state.spent == Amount(Decimal("0.30"), 30 * 150, 30)
    assert await admit(gov, budget, "0.01", "next")


async def test_a_budget_set_at_run_time_is_seeded_from_the_ledger(ledger: SQLiteStore) -> None:
    """A block budget created on a scope that already spent in its window starts from the ledger's
    figure, not zero (defect 4)."""
    await spend(ledger, served=5, cost="0.01")
    counters = MemoryCounters()
    gov, _ = governor([], counters, ledger, stored=[team_budget("0.06")])
    await gov.rebuild(NOW)
    await gov.refresh_budgets()
    budget = gov._policy.budgets[0]
    assert (await gov.view(budget, NOW)).state.spent.usd == Decimal("0.05")
    assert not await admit(gov, budget, "0.02", "over")
    assert await admit(gov, budget, "0.01", "fits")


async def test_a_budget_set_at_run_time_catches_up_with_spend_no_hold_tracked(ledger: SQLiteStore) -> None:
    """Requests admitted before every replica held on a new budget (in flight at its seed, or in a
    spool) reach the ledger after the seed read it: the governor adds them once they do, flush lag
    after flush lag, and counts no request twice: one admitted with a hold after the announcement
    is in the counter and, once flushed, in the ledger too."""
    await spend(ledger, served=5, cost="0.01")
    stored: list[Budget] = []
    gov, _ = governor([], MemoryCounters(), ledger, stored=stored)
    gov._rebuild_lag = 0.05
    await gov.refresh_budgets()  # at start: what was stored before is no news to the other replicas
    stored.append(team_budget("0.10"))
    await gov.refresh_budgets(announce=True)
    budget = gov._policy.budgets[0]
    assert (await gov.view(budget, NOW)).state.spent.usd == Decimal("0.05")
    await spend(ledger, served=3, cost="0.01")  # admitted without a hold, flushed only now
    # Admitted with a hold after the announcement, started before the catch-up's cutoff: its settle
    # charges it and notes the charge, which the catch-up leaves out of the ledger's figure.
    started = time.time()
    check = gov._policy.check_for(budget, NOW)
    request = AdmissionRequest("held", Amount(Decimal("0.01"), 0, 1), NOW + 60, (check,))
    assert (await gov._counters.admit(request, NOW)).admitted
    caught_up = gov._policy.caught_up(request, started)
    assert caught_up == (check.write_key,)
    cent = Amount(Decimal("0.01"), 0, 1)
    await gov._counters.settle(Settlement("held", caught_up, cent, cent, caught_up_keys=caught_up), NOW)
    await ledger.write([record("held", started_at=started, cost_usd=Decimal("0.01"))])
    await asyncio.sleep(0.2)  # two catch-ups
    assert (await gov.view(budget, NOW)).state.spent.usd == Decimal("0.09")
    await spend(ledger, served=1, cost="0.01")  # a long request in flight at the announcement
    await asyncio.sleep(0.5)
    assert (await gov.view(budget, NOW)).state.spent.usd == Decimal("0.10")
    assert not await admit(gov, budget, "0.01", "over")
    await gov.stop()


async def test_budgets_loaded_at_start_are_not_caught_up(ledger: SQLiteStore) -> None:
    """A restarted replica's budgets are not new to the fleet: no catch-up, which may count over."""
    await spend(ledger, served=5, cost="0.01")
    gov, _ = governor([], MemoryCounters(), ledger, stored=[team_budget("0.10")])
    await gov.refresh_budgets()
    budget = gov._policy.budgets[0]
    await gov.step(time.time())
    await gov.step(time.time() + 2.1)  # a catch-up would note what the counter holds here
    assert await admit(gov, budget, "0.01", "settles-after-the-seed")
    write = (gov._policy.check_for(budget, NOW).write_key,)
    cent = Amount(Decimal("0.01"), 0, 1)
    await gov._counters.settle(Settlement("settles-after-the-seed", write, cent, cent), NOW)
    await spend(ledger, served=1, cost="0.01")  # the same request, flushed
    await gov.step(time.time() + 3.2)  # and count it twice here
    assert (await gov.view(budget, NOW)).state.spent.usd == Decimal("0.06")  # not 0.07


async def test_a_lowered_limit_applies_at_once(ledger: SQLiteStore) -> None:
    gov, _ = governor([team_budget("10")], MemoryCounters(), ledger)
    await gov.rebuild(NOW)
    assert await admit(gov, team_budget("10"), "2", "r1")
    gov._policy.set_budgets([team_budget("1")])
    assert not await admit(gov, team_budget("1"), "0.5", "r2")  # 2 held of 1


async def test_budget_alerts_hold_while_lost_counters_are_rebuilt(ledger: SQLiteStore) -> None:
    """Redis comes back empty: the exhausted alert neither resolves nor fires again (defect 8);
    the governor sees the lost state itself and rebuilds (defect 1)."""
    need_redis()
    namespace = f"cwtest:{uuid.uuid4().hex[:12]}:"
    counters = RedisCounters(REDIS, namespace=namespace)
    budget = team_budget("0.05")
    await spend(ledger, served=5, cost="0.01")
    gov, alerts = governor([budget], counters, ledger)
    try:
        await gov.rebuild(NOW)
        await gov.step(NOW)
        assert [a.kind for a in alerts.sent] == [AlertKind.BUDGET_EXHAUSTED]
        await drop_namespace(namespace)  # FLUSHALL of our keys
        await gov.step(NOW + 1)
        assert len(alerts.sent) == 1 and gov._health.unseeded_since == NOW + 1
        assert not await admit(gov, budget, "0.001", "while-lost")  # refused: unseeded
        await gov.step(NOW + 2)  # past the lag: rebuilt from the ledger
        await gov.step(NOW + 3)
        assert len(alerts.sent) == 1 and gov.active[0].firing
        assert (await gov.view(budget, NOW)).state.spent.usd == Decimal("0.05")
    finally:
        await counters.close()
        await drop_namespace(namespace)


async def test_a_new_leader_takes_over_the_firing_alerts(ledger: SQLiteStore) -> None:
    """The lease holder dies while an alert fires: the next leader continues that episode (no second
    one), resolves it when the budget is raised, and the old holder stops re-announcing (defect 7)."""
    budget = team_budget("0.05")
    await spend(ledger, served=5, cost="0.01")
    counters = MemoryCounters()
    lease_a, lease_b = Lease(True), Lease(False)
    a, alerts_a = governor([budget], counters, ledger, lease_a)
    b, alerts_b = governor([budget], counters, ledger, lease_b)
    await a.rebuild(NOW)
    await a.step(NOW)
    await b.step(NOW)
    assert [x.kind for x in alerts_a.sent] == [AlertKind.BUDGET_EXHAUSTED] and not alerts_b.sent
    await ledger.save_alerts(alerts_a.sent)  # what the dispatcher's store lane does
    fired = alerts_a.sent[0]
    lease_a.leading, lease_b.leading = False, True
    await b.step(NOW + 5)
    await a.step(NOW + 5)
    assert not alerts_b.sent and [x.id for x in alerts_b.adopted] == [fired.id]
    assert alerts_a.disowned == 1
    raised = replace(budget, limit_usd=Decimal("1"))
    b._policy.set_budgets([raised])
    b._budgets = None  # keep the raised budget
    await b.step(NOW + 10)
    assert [(x.id, x.resolved_at is not None) for x in alerts_b.sent] == [(fired.id, True)]


async def test_a_rolling_window_is_rebuilt_bucket_by_bucket(ledger: SQLiteStore) -> None:
    """Each bucket gets the ledger's spend in its own span: a second rebuild adds nothing, and
    spend ages out with its bucket."""
    budget = Budget("roll", BudgetScope.of({"team": "search"}), Window.rolling(3600, 6), Decimal(10))
    at = [NOW - 3000, NOW - 1300, NOW - 5]
    await ledger.write([record(f"roll-{i}", started_at=t, cost_usd=Decimal("0.1")) for i, t in enumerate(at)])
    gov, _ = governor([budget], MemoryCounters(), ledger)
    for _ in range(2):
        await gov.rebuild(NOW)
        assert (await gov.view(budget, NOW)).state.spent == Amount(Decimal("0.3"), 450, 3)
    later = NOW + 700  # the oldest record's bucket has left the window
    assert (await gov.view(budget, later)).state.spent == Amount(Decimal("0.2"), 300, 2)


async def test_a_budget_with_a_new_scope_starts_from_the_ledger_of_that_scope(ledger: SQLiteStore) -> None:
    await spend(ledger, served=4, cost="0.01")  # team search
    counters = MemoryCounters()
    ads = Budget("b", BudgetScope.of({"team": "ads"}), DAY, Decimal(1))
    gov, _ = governor([ads], counters, ledger, stored=[ads])
    await gov.rebuild(NOW)
    assert await admit(gov, ads, "0.5", "r1")
    search = replace(ads, scope=BudgetScope.of({"team": "search"}))
    gov, _ = governor([ads], counters, ledger, stored=[search])
    await gov.refresh_budgets()
    assert (await gov.view(search, NOW)).state == BudgetState(Amount(Decimal("0.04"), 600, 4))
