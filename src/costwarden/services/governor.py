"""The governor: a background loop that watches budgets, the counter store and spikes, and turns
what it sees into alerts (fired once, resolved when the condition clears) and budget gauges.

One replica leads (a lease in the counter store when it is shared); the others only keep gauges.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from typing import Protocol

from costwarden.aio import wait_event
from costwarden.chain.admit import StoreHealth
from costwarden.chain.policy import AdmissionPolicy
from costwarden.domain.admission import BudgetSeed, CounterSeed
from costwarden.domain.alert import Alert, AlertBook, AlertKind, AlertOwner, Condition, Severity, kinds_of
from costwarden.domain.budget import Budget, counter_spans, seed_key
from costwarden.ports import CounterStore, CounterStoreUnavailable, CounterStoreUnseeded, LedgerStore
from costwarden.services.budgets import BudgetView, budget_view
from costwarden.services.ledger_charges import charged, readable
from costwarden.services.spikes import SpikeWatch

log = logging.getLogger(__name__)
HUNDRED = Decimal(100)
# Budget alerts wait while counters are unseeded or being rebuilt: emptied counters are not the truth.
BUDGET_KINDS = frozenset(
    {AlertKind.BUDGET_EXHAUSTED, AlertKind.BUDGET_THRESHOLD, AlertKind.FORECAST_OVERRUN, AlertKind.SCALE_CAPPED}
)
# `scale_capped` conditions from the budget views of a tick (services.scaling).
ScalingConditions = Callable[[Mapping[str, BudgetView], float], Awaitable[list[Condition]]]


CounterSpan = tuple[str, float, float | None]  # a counter's key and the time it covers (`counter_spans`)
# A new budget catches up with the ledger after these many flush lags (as requests in flight finish).
CATCH_UP_LAGS = (1, 2, 4, 8, 16, 32, 64)
# Slack after an announcement's time for the store to apply it: requests started before then may
# have been admitted without a hold on the new budget.
CUTOFF_MARGIN = 0.25


def _cutoff(generation: int) -> float:
    """When every replica holds on budgets announced with `generation` (its millisecond), with slack."""
    return generation / 1000 + CUTOFF_MARGIN


class AlertSubmitter(Protocol):
    def submit(self, alerts: Sequence[Alert]) -> None:
        """Store and notify."""

    def record(self, alerts: Sequence[Alert]) -> None:
        """Store only (shadow mode)."""

    def adopt(self, active: Sequence[Alert]) -> None:
        """This replica leads: re-announce these firing alerts (never as new)."""

    def disown(self) -> None:
        """This replica no longer leads: stop re-announcing firing alerts."""


class Leadership(Protocol):
    async def lead(self, now: float) -> bool:
        """True while this process holds the evaluation lease."""


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
        firing: Callable[[], Awaitable[list[Alert]]] | None = None,
        scaling: ScalingConditions | None = None,
    ) -> None:
        self._scaling = scaling
        self._policy = policy
        self._counters = counters
        self._ledger = ledger
        self._health = health
        self._alerts = alerts
        self._leadership = leadership
        self._interval = interval
        self._spikes = spikes
        self._budgets = budgets
        # The alerts this governor fires and resolves; the others' alerts are never in its books.
        # Its shadow book holds the spikes of shadow mode: recorded in the store, never notified.
        self._owners = frozenset({AlertOwner.GOVERNOR} | ({AlertOwner.SCALING} if scaling is not None else set()))
        self._owned = kinds_of(self._owners)
        self._book = AlertBook(tuple(a for a in active if a.owner in self._owners))
        self._shadow_book = AlertBook(tuple(a for a in active if a.owner is AlertOwner.SHADOW))
        self._task: asyncio.Task[None] | None = None
        self._was_reachable = True
        self._rebuild_at: float | None = None
        self._rebuild_lag = rebuild_lag
        self._firing = firing  # the alerts firing in the store, loaded by a replica taking the lead
        self._leading = False
        self._loaded = False  # the stored budgets were loaded once (at start)
        self._catching: set[asyncio.Task[None]] = set()  # catch-ups of new budgets (`_catch_up`)
        self._reloading: asyncio.Future[None] | None = None
        self.views: dict[str, BudgetView] = {}

    async def view(self, budget: Budget, now: float) -> BudgetView:
        """Raises CounterStoreUnavailable, or CounterStoreUnseeded while the budget is not seeded."""
        return await budget_view(self._counters, self._policy.check_for(budget, now), budget, now)

    async def seed(self, budgets: Sequence[Budget], now: float, announce: bool = False) -> int:
        """Seed the budgets' counters from the ledger: the store raises a counter to the ledger's
        figure, never lowers it (holds and spend the ledger does not have yet are kept), and admits
        on them again. Scopes on tags cannot be read from the ledger's columns: their counters are
        seeded as they are. `announce`: the budget definitions changed; in the same step the store
        moves their generation on, so every replica reloads them before its next admission.
        Returns the store's generation. The ledger is read once per scope kind and window
        (`services.ledger_charges`), those reads at once."""
        seeds = await self._seeds(budgets, [counter_spans(budget, now) for budget in budgets], now)
        return await self._counters.restore(seeds, time.time() if announce else None)  # after the reads

    async def _seeds(
        self, budgets: Sequence[Budget], counters: Sequence[Sequence[CounterSpan]], at: float, catch_up: bool = False
    ) -> list[BudgetSeed]:
        """Each budget's seed: the ledger's figures for its `counters` (key, start, end), kept as its window at `at`."""
        wanted = [(b, [(start, end) for _, start, end in c]) for b, c in zip(budgets, counters, strict=True)]
        seeds = []
        for budget, spans, spent in zip(budgets, counters, await charged(self._ledger, wanted), strict=True):
            retain = budget.window.retain_until(at)
            parts = tuple(CounterSeed(key, amount, retain) for (key, _, _), amount in zip(spans, spent, strict=True))
            seeds.append(BudgetSeed(seed_key(budget), parts, catch_up=catch_up))
        return seeds

    async def rebuild(self, now: float) -> None:
        """Seed every budget from the ledger (at start, after an outage, after the store lost its state)."""
        since = self._health.unseeded_since
        await self.seed(self._policy.budgets, now)
        if self._health.unseeded_since == since:  # not lost again meanwhile
            self._health.unseeded_since = None
        log.info("rebuilt the counters of %d budgets from the ledger", len(self._policy.budgets))

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

    async def refresh_budgets(self, announce: bool = False) -> None:
        """Load the stored budgets. `announce` (this process changed them): seed new ones (or ones
        with a new scope or window) and move the definitions' generation on in the same step, so
        that every replica reloads them before its next admission. Otherwise (at start and each
        tick) new ones that came without an announcement (stored while the shared store was
        unreachable, or in-process state) are seeded here before they admit anything; if that
        fails they refuse as unseeded until a rebuild succeeds."""
        if self._budgets is None:
            return
        known_generation = self._policy.generation
        generation = None
        if not announce:  # read before the definitions: they are at least as new as it says
            with contextlib.suppress(CounterStoreUnavailable):
                generation = await self._counters.restore(())
        budgets = await self._budgets()
        known = {seed_key(b) for b in self._policy.budgets}
        fresh = [b for b in budgets if seed_key(b) not in known]
        announced = generation is not None and generation != known_generation and self._loaded
        cutoff = None
        if announce or (fresh and not announced):
            try:
                generation = await self.seed(fresh, time.time(), announce)
                cutoff = _cutoff(generation) if announce else time.time() + self._interval + CUTOFF_MARGIN
            except CounterStoreUnavailable as exc:
                log.warning("could not seed or announce %d new budgets (%s); they wait for the next rebuild, "
                            "other replicas for their next tick", len(fresh), exc)
                self._health.unseeded_since = self._health.unseeded_since or time.time()
        elif announced and generation is not None:  # seeded by whoever announced them
            cutoff = _cutoff(generation)
        self._adopt(budgets, fresh, generation, cutoff)

    def _adopt(self, budgets: list[Budget], fresh: list[Budget], generation: int | None, cutoff: float | None) -> None:
        """Admit with `budgets` (definitions of `generation`) from now on; new ones catch up with
        the requests started before `cutoff` that no settle charged: one admitted with a hold on
        them has its charge noted (see `AdmissionPolicy.caught_up`), and the catch-up leaves it
        out, so each counts once; every replica derives the same cutoff from the generation.
        Budgets loaded at start are no news to the fleet: a catch-up then would only count over."""
        caught_up: dict[str, float] = {}
        if fresh and self._loaded and cutoff is not None:
            caught_up = {seed_key(b): cutoff for b in fresh if readable(b)}
            task = asyncio.ensure_future(self._catch_up(fresh, cutoff))
            self._catching.add(task)
            task.add_done_callback(self._catching.discard)
        self._loaded = True
        self._policy.set_budgets(budgets, caught_up)
        if generation is not None:
            self._policy.generation = generation

    async def reload(self, generation: int) -> None:
        """A request met definitions of another generation in the store: load them before it is
        admitted (one load at a time, shared by the requests that wait for it). Raises what loading
        from the database raises."""
        task = self._reloading
        if task is None or task.done():
            task = self._reloading = asyncio.ensure_future(self._reload(generation))
        await asyncio.shield(task)

    async def _reload(self, generation: int) -> None:
        if self._budgets is None:
            return
        budgets = await self._budgets()  # stored before the generation moved on: seeded by whoever moved it
        known = {seed_key(b) for b in self._policy.budgets}
        self._adopt(budgets, [b for b in budgets if seed_key(b) not in known], generation, _cutoff(generation))

    async def _catch_up(self, budgets: Sequence[Budget], cutoff: float) -> None:
        """New budgets gain the spend no hold tracked: requests admitted before every replica held
        on them (started before `cutoff`) whose records reached the ledger after their seed read it
        (they were in flight, or in a spool). Read again after each of `CATCH_UP_LAGS` flush lags,
        as such requests finish; each read adds only what the ledger has beyond the last (see
        `BudgetSeed.catch_up`), so every replica that loaded the budget may do it."""
        started = time.monotonic()
        for lags in CATCH_UP_LAGS:
            await asyncio.sleep(max(0.0, started + lags * self._rebuild_lag - time.monotonic()))
            current = {seed_key(b) for b in self._policy.budgets}
            live = [b for b in budgets if seed_key(b) in current and readable(b)]
            if not live:
                return
            try:
                await self._counters.restore(await self._caught_up(live, cutoff))
            except Exception as exc:  # the next read has it all the same
                log.warning("could not catch %d new budgets up with the ledger: %s", len(live), exc)

    async def _caught_up(self, budgets: Sequence[Budget], cutoff: float) -> list[BudgetSeed]:
        """The ledger's figures for the counters of the windows at `cutoff`, of requests started before it."""
        counters = [
            [(key, start, cutoff if end is None else min(end, cutoff))
             for key, start, end in counter_spans(budget, cutoff) if start < cutoff]
            for budget in budgets
        ]  # fmt: skip
        return await self._seeds(budgets, counters, cutoff, catch_up=True)

    async def _views(self, now: float) -> tuple[dict[str, BudgetView], list[Condition], bool]:
        """Views and budget conditions; False when a budget was not seeded (the store lost its state)."""
        views: dict[str, BudgetView] = {}
        conditions: list[Condition] = []
        for budget in self._policy.budgets:
            try:
                view = await self.view(budget, now)
            except CounterStoreUnseeded:
                if self._health.unseeded_since is None:
                    log.warning("budget counters are not seeded (the counter store lost its state?): rebuilding")
                    self._health.unseeded_since = now
                return views, conditions, False
            views[budget.id] = view
            conditions.extend(self._budget_conditions(view))
        return views, conditions, True

    async def _lead(self, now: float, reachable: bool) -> bool:
        """Whether this replica leads now. Taking the lead loads the firing alerts from the store (one
        episode per condition, whoever fired it) and re-announces them; losing it stops that."""
        leading = reachable and await self._leadership.lead(now)
        if leading and not self._leading and self._firing is not None:
            try:
                stored = [a for a in await self._firing() if a.firing]
            except Exception:
                log.exception("could not load the firing alerts; keeping this replica's own")
                return False
            self._book = _adopted(self._book, [a for a in stored if a.owner in self._owners])
            self._shadow_book = _adopted(self._shadow_book, [a for a in stored if a.owner is AlertOwner.SHADOW])
        if leading and not self._leading:
            self._alerts.adopt(self._book.active)
        elif self._leading and not leading:
            self._alerts.disown()
        self._leading = leading
        return leading

    async def step(self, now: float) -> None:
        try:
            await self.refresh_budgets()
        except Exception:
            log.exception("could not reload stored budgets; keeping the current ones")
        conditions: list[Condition] = []
        views: dict[str, BudgetView] = {}
        seeded = True
        try:
            views, conditions, seeded = await self._views(now)
            reachable = await self._counters.ping()
        except CounterStoreUnavailable:
            reachable = False
        if views and seeded:
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
        lost = self._health.unseeded_since
        if lost is not None and self._rebuild_at is None:
            # The store lost its state at or before `lost`: rebuild once what was recorded before
            # then has reached the ledger (each replica flushes within the lag).
            self._rebuild_at = lost + self._rebuild_lag
        frozen = self._rebuild_at is not None or not seeded  # the counters are not the truth yet
        if reachable and self._rebuild_at is not None and now >= self._rebuild_at:
            self._rebuild_at = None
            await self.rebuild(now)
        self._was_reachable = reachable
        scaled = await self._scaled(views if seeded else {}, now)
        conditions.extend(scaled or ())
        if self._spikes is not None:
            conditions.extend(await self._spikes.step(now))
        # The lease lives in the shared store: while it is down every replica may raise the outage
        # alert (each sees it), and nothing else.
        leading = await self._lead(now, reachable)
        shadow = self._spikes.shadow.values() if self._spikes is not None else ()
        self._shadow_book, shadowed = self._shadow_book.evaluate(shadow, now)
        if (shadowed.to_fire or shadowed.to_resolve) and leading:
            self._alerts.record((*shadowed.to_fire, *shadowed.to_resolve))
        kinds = self._owned  # it resolves only its own alerts
        if not leading:
            kinds = frozenset({AlertKind.STATE_STORE_UNREACHABLE})  # the rest needs the store and the lease
        elif frozen:
            kinds -= BUDGET_KINDS
        if scaled is None:  # not evaluated this tick: `scale_capped` episodes stay as they are
            kinds -= {AlertKind.SCALE_CAPPED}
        conditions = [c for c in conditions if c.kind in kinds]
        self._book, result = self._book.evaluate(conditions, now, kinds)
        changed = (*result.to_fire, *result.to_resolve)
        if changed:
            self._alerts.submit(changed)

    async def _scaled(self, views: Mapping[str, BudgetView], now: float) -> list[Condition] | None:
        """`scale_capped` conditions; None when they could not be evaluated (no budget views, an error)."""
        if self._scaling is None:
            return []
        if not views and self._policy.budgets:
            return None
        try:
            return await self._scaling(views, now)
        except Exception:
            log.exception("could not evaluate the scaling caps; `scale_capped` alerts wait for the next tick")
            return None

    @property
    def active(self) -> tuple[Alert, ...]:
        return self._book.active

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="costwarden-governor")

    async def _run(self) -> None:
        wake = self._health.wake
        while True:
            wake.clear()
            try:
                await self.step(time.time())
            except Exception:
                log.exception("the governor's evaluation failed; retrying next interval")
            delay = self._interval
            if self._rebuild_at is not None:
                delay = min(delay, max(0.0, self._rebuild_at - time.time()))
            await wait_event(wake, delay)  # a request met unseeded counters

    async def stop(self) -> None:
        for task in list(self._catching):
            task.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


def _adopted(book: AlertBook, stored: list[Alert]) -> AlertBook:
    """A book taking the lead: the stored firing alerts (one episode per condition, whoever fired
    it), then this replica's own that the store does not hold yet."""
    known = {a.id for a in stored}
    return AlertBook((*stored, *(a for a in book.active if a.id not in known)))
