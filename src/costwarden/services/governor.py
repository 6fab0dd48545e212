"""The governor: a background loop that watches budgets, the counter store and spikes, and turns
what it sees into alerts (fired once, resolved when the condition clears) and budget gauges.

One replica leads (a lease in the counter store when it is shared); the others only keep gauges.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from costwarden.chain.admit import StoreHealth
from costwarden.chain.policy import AdmissionPolicy
from costwarden.domain.alert import Alert, AlertBook, AlertKind, Condition, Severity
from costwarden.domain.budget import Amount, Budget, BudgetState, remaining_usd, utilisation
from costwarden.domain.forecast import Forecast, forecast
from costwarden.domain.report import SpendQuery
from costwarden.ports import CounterStore, CounterStoreUnavailable, LedgerStore
from costwarden.services.spikes import SpikeWatch

log = logging.getLogger(__name__)
HUNDRED = Decimal(100)


class AlertSubmitter(Protocol):
    def submit(self, alerts: Sequence[Alert]) -> None:
        """Store and notify."""

    def record(self, alerts: Sequence[Alert]) -> None:
        """Store only (shadow mode)."""


class Leadership(Protocol):
    async def lead(self, now: float) -> bool:
        """True while this process holds the evaluation lease."""


@dataclass(frozen=True, slots=True)
class BudgetView:
    """A budget's current window, as the admin API and `costwarden budgets list` show it."""

    budget: Budget
    window_start: float
    window_end: float
    state: BudgetState
    remaining_usd: Decimal
    utilisation: Decimal
    forecast: Forecast | None


class Governor:
    def __init__(
        self,
        policy: AdmissionPolicy,
        counters: CounterStore,
        ledger: LedgerStore,
        health: StoreHealth,
        alerts: AlertSubmitter,
        leadership: Leadership,
        interval: float,
        spikes: SpikeWatch | None,
        active: Sequence[Alert] = (),
        budgets: Callable[[], Awaitable[list[Budget]]] | None = None,
        rebuild_lag: float = 1.0,
    ) -> None:
        self._policy = policy
        self._counters = counters
        self._ledger = ledger
        self._health = health
        self._alerts = alerts
        self._leadership = leadership
        self._interval = interval
        self._spikes = spikes
        self._budgets = budgets
        self._book = AlertBook(tuple(active))
        self._shadow_book = AlertBook()  # alerts firing before a restart stay deduplicated
        self._task: asyncio.Task[None] | None = None
        self._was_reachable = True
        self._rebuild_at: float | None = None
        self._rebuild_lag = rebuild_lag
        self.views: dict[str, BudgetView] = {}

    async def view(self, budget: Budget, now: float) -> BudgetView:
        check = self._policy.check_for(budget, now)
        state = await self._counters.budget_state(check.read_keys, now)
        start, end = budget.window.bounds(now)
        projection = forecast(state.spent.usd, budget.limit_usd, start, end, now) if end > now else None
        return BudgetView(
            budget, start, end, state, remaining_usd(budget, state), utilisation(budget, state), projection
        )

    async def rebuild(self, now: float) -> None:
        """Set every budget counter to the ledger's spend in its window (the ledger is the truth).

        Scopes on tags cannot be read from the ledger's columns and are left as they are."""
        spent: dict[str, Amount] = {}
        retain: dict[str, float] = {}
        for budget in self._policy.budgets:
            where = tuple(budget.scope.dimensions)
            if any(name.startswith("tag.") for name, _ in where):
                continue
            check = self._policy.check_for(budget, now)
            start, _ = budget.window.bounds(now)
            query = SpendQuery(group_by=(), start=start, end=None, where=where, percentiles=False)
            report = await self._ledger.spend(query)
            total = report.total
            spent[check.write_key] = Amount(total.cost_usd, total.input_tokens + total.output_tokens, total.requests)
            retain[check.write_key] = check.retain_until
        if spent:
            await self._counters.restore(spent, retain)
            log.info("rebuilt %d budget counters from the ledger", len(spent))

    def _budget_conditions(self, view: BudgetView) -> list[Condition]:
        budget, state = view.budget, view.state
        labels = {"budget": budget.id, "scope": str(budget.scope), "window": budget.window.key(view.window_start)}
        percent = view.utilisation * HUNDRED
        spent = state.spent.usd
        conditions: list[Condition] = []
        reached = [t for t in budget.thresholds if percent >= t]
        # A block budget refuses before its spend reaches the limit: it is exhausted while what remains
        # is less than a request this replica had to refuse in this window.
        refusal = self._health.exhausted.get(budget.id)
        window_key = self._policy.check_for(budget, view.window_start).write_key
        refused_here = refusal is not None and refusal[0] == window_key and view.remaining_usd < refusal[1]
        exhausted = percent >= HUNDRED or refused_here
        if exhausted:
            conditions.append(
                Condition.of(
                    AlertKind.BUDGET_EXHAUSTED,
                    labels,
                    Severity.CRITICAL,
                    spent,
                    budget.limit_usd,
                    f"budget {budget.id!r} ({budget.scope}) is exhausted: ${spent} of ${budget.limit_usd}",
                )
            )
        elif reached:
            top = max(reached)
            conditions.append(
                Condition.of(
                    AlertKind.BUDGET_THRESHOLD,
                    {**labels, "threshold": str(top)},
                    Severity.WARNING,
                    spent,
                    budget.limit_usd * top / HUNDRED,
                    f"budget {budget.id!r} ({budget.scope}) passed {top}%: ${spent} of ${budget.limit_usd}",
                )
            )
        projection = view.forecast
        if projection is not None and projection.will_exceed and projection.confident and not exhausted:
            when = budget.window.local(projection.expected_exceed_at or view.window_end)
            conditions.append(
                Condition.of(
                    AlertKind.FORECAST_OVERRUN,
                    labels,
                    Severity.WARNING,
                    projection.projected_spend,
                    budget.limit_usd,
                    f"budget {budget.id!r} is on track to spend ${projection.projected_spend:.2f} of "
                    f"${budget.limit_usd} this window; expected to run out at {when}",
                )
            )
        return conditions

    async def refresh_budgets(self) -> None:
        if self._budgets is not None:
            self._policy.set_budgets(await self._budgets())

    async def step(self, now: float) -> None:
        try:
            await self.refresh_budgets()
        except Exception:
            log.exception("could not reload stored budgets; keeping the current ones")
        conditions: list[Condition] = []
        views: dict[str, BudgetView] = {}
        try:
            for budget in self._policy.budgets:
                view = await self.view(budget, now)
                views[budget.id] = view
                conditions.extend(self._budget_conditions(view))
            reachable = await self._counters.ping()
        except CounterStoreUnavailable:
            reachable = False
        if views:
            self.views = views
        if not reachable or not self._health.reachable:
            conditions.append(
                Condition.of(
                    AlertKind.STATE_STORE_UNREACHABLE,
                    {"store": "counters"},
                    Severity.CRITICAL,
                    Decimal(self._health.failures),
                    Decimal(0),
                    "the shared counter store is unreachable; budgets apply their fail mode",
                )
            )
        if reachable and not self._was_reachable:
            # Back after an outage: rebuild once the records of the outage have reached the ledger.
            self._rebuild_at = now + self._rebuild_lag
        if reachable and self._rebuild_at is not None and now >= self._rebuild_at:
            self._rebuild_at = None
            await self.rebuild(now)
        self._was_reachable = reachable
        if self._spikes is not None:
            conditions.extend(await self._spikes.step(now))
            self._shadow_book, shadowed = self._shadow_book.evaluate(self._spikes.shadow.values(), now)
            if (shadowed.to_fire or shadowed.to_resolve) and reachable and await self._leadership.lead(now):
                self._alerts.record((*shadowed.to_fire, *shadowed.to_resolve))
        # The lease lives in the shared store: while it is down every replica may raise the outage
        # alert (each sees it), and nothing else.
        leading = reachable and await self._leadership.lead(now)
        kinds = None if leading else {AlertKind.STATE_STORE_UNREACHABLE}  # the rest needs the store and the lease
        if kinds is not None:
            conditions = [c for c in conditions if c.kind in kinds]
        self._book, result = self._book.evaluate(conditions, now, kinds)
        changed = (*result.to_fire, *result.to_resolve)
        if changed:
            self._alerts.submit(changed)

    @property
    def active(self) -> tuple[Alert, ...]:
        return self._book.active

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="costwarden-governor")

    async def _run(self) -> None:
        while True:
            try:
                await self.step(time.time())
            except Exception:
                log.exception("the governor's evaluation failed; retrying next interval")
            await asyncio.sleep(self._interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


def budget_json(view: BudgetView) -> dict[str, object]:
    """A budget as the admin API and the CLI show it; money as strings."""
    budget, state, projection = view.budget, view.state, view.forecast
    return {
        "id": budget.id,
        "scope": dict(budget.scope.dimensions),
        "window": budget.window.describe(),
        "window_start": view.window_start,
        "window_end": view.window_end,
        "action": budget.action.value,
        "fail_mode": budget.fail_mode.value,
        "limit_usd": str(budget.limit_usd),
        "limit_tokens": budget.limit_tokens,
        "limit_requests": budget.limit_requests,
        "spent_usd": str(state.spent.usd),
        "reserved_usd": str(state.reserved.usd),
        "remaining_usd": str(view.remaining_usd),
        "utilisation": str(view.utilisation.quantize(Decimal("0.0001"))),
        "spent_tokens": state.spent.tokens,
        "spent_requests": state.spent.requests,
        "forecast_usd": None if projection is None else str(projection.projected_spend.quantize(Decimal("0.000001"))),
        "forecast_exceeds_at": None
        if projection is None or not projection.will_exceed
        else projection.expected_exceed_at,
    }
