"""The counter store of a single gateway process: plain dicts, decided by the domain functions
themselves (budget.admit, ratelimit.check/adjust), so it is the reference for other adapters.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from costwarden.domain import ratelimit
from costwarden.domain.admission import (
    AdmissionRequest,
    AdmissionResult,
    BudgetCheck,
    BudgetSeed,
    RateCheck,
    RateOutcome,
    Settlement,
    SlotCheck,
)
from costwarden.domain.budget import EMPTY, NOTHING, Action, Amount, Budget, BudgetScope, BudgetState, admit
from costwarden.domain.window import Window
from costwarden.ports import CounterStoreUnseeded

_ANY_WINDOW = Window.rolling(1, 1)  # decisions do not depend on the window, only messages do
_UNLIMITED = Decimal("Infinity")


@dataclass(slots=True)
class _Counter:
    """One budget counter: its state, its live holds (reservation id -> expiry, amount) and a
    heap of hold expiries (entries of settled holds stay until they pop). `seeded`: created by an
    admit or a rebuild (its spend is the window's); False when a settle created it (after the
    store lost its state, it holds only what settled since)."""

    retain_until: float
    seeded: bool = False
    state: BudgetState = EMPTY
    holds: dict[str, tuple[float, Amount]] = field(default_factory=dict)
    expiries: list[tuple[float, str]] = field(default_factory=list)

    def purge(self, now: float) -> None:
        while self.expiries and self.expiries[0][0] <= now:
            _, rid = heapq.heappop(self.expiries)
            hold = self.holds.get(rid)
            if hold is not None and hold[0] <= now:
                del self.holds[rid]
                self.state = self.state.release(hold[1])


@dataclass(slots=True)
class _Rate:
    """A GCRA bucket, kept until it is full again and the requests it admitted could settle."""

    limit: ratelimit.RateLimit
    state: ratelimit.RateState
    keep_until: float = 0.0


def _at_least(spent: Amount, ledger: Amount) -> Amount:
    return Amount(max(spent.usd, ledger.usd), max(spent.tokens, ledger.tokens), max(spent.requests, ledger.requests))


class MemoryCounters:
    """`CounterStore` in one process. Every method runs without awaiting, hence atomically.

    Counters are dropped once `retain_until` passes, settled markers after `settled_ttl` seconds,
    a rate key once its bucket is full again and its last admitted request expired (as the Redis
    adapter's TTLs do): a token correction arriving later is dropped.
    """

    def __init__(self, settled_ttl: float = 3600.0, orphan_ttl: float = 2 * 86400.0) -> None:
        self._counters: dict[str, _Counter] = {}
        self._retention: list[tuple[float, str]] = []
        self._rates: dict[str, _Rate] = {}
        self._slots: dict[str, dict[str, float]] = {}
        self._settled: dict[str, float] = {}
        self._settled_order: deque[tuple[float, str]] = deque()
        self._settled_ttl = settled_ttl
        self._orphan_ttl = orphan_ttl
        self._budgets: dict[tuple[object, ...], Budget] = {}
        self._seeded: set[str] = set()  # seed keys of budgets a rebuild has seeded

    # Housekeeping.

    def _sweep(self, now: float) -> None:
        while self._retention and self._retention[0][0] <= now:
            until, key = heapq.heappop(self._retention)
            counter = self._counters.get(key)
            if counter is not None and counter.retain_until == until:
                del self._counters[key]
        while self._settled_order and self._settled_order[0][0] <= now:
            until, rid = self._settled_order.popleft()
            if self._settled.get(rid) == until:
                del self._settled[rid]

    def _retain(self, key: str, counter: _Counter, until: float) -> None:
        counter.retain_until = until
        if math.isfinite(until):
            heapq.heappush(self._retention, (until, key))

    def _counter(self, key: str, now: float, retain_until: float | None = None) -> _Counter:
        """The live counter `key`, created when missing (kept for `orphan_ttl` unless told)."""
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = _Counter(math.inf)
            self._retain(key, counter, now + self._orphan_ttl if retain_until is None else retain_until)
        elif retain_until is not None and retain_until != counter.retain_until:
            self._retain(key, counter, retain_until)
        counter.purge(now)
        return counter

    def _sum(self, read_keys: Sequence[str], now: float) -> BudgetState:
        total = EMPTY
        for key in read_keys:
            counter = self._counters.get(key)
            if counter is not None:
                counter.purge(now)
                total = BudgetState(total.spent + counter.state.spent, total.reserved + counter.state.reserved)
        return total

    def _leases(self, key: str, now: float) -> dict[str, float]:
        leases = self._slots.setdefault(key, {})
        for rid in [rid for rid, until in leases.items() if until <= now]:
            del leases[rid]
        return leases

    def _rate(self, key: str, now: float) -> _Rate | None:
        rate = self._rates.get(key)
        if rate is not None and rate.keep_until <= now:
            del self._rates[key]
            return None
        return rate

    def _budget(self, check: BudgetCheck) -> Budget:
        """The domain Budget that decides `check` (cached: checks repeat while a window holds)."""
        limits = (check.limit_usd, check.limit_tokens, check.limit_requests)
        cache_key = (check.budget_id, *limits, check.enforce)
        budget = self._budgets.get(cache_key)
        if budget is None:
            usd, tokens, requests = limits
            budget = Budget(
                check.budget_id,
                BudgetScope(),
                _ANY_WINDOW,
                _UNLIMITED if usd is None else usd,
                None if tokens is None else int(tokens),
                None if requests is None else int(requests),
                action=Action.BLOCK if check.enforce else Action.ALERT_ONLY,
            )
            self._budgets[cache_key] = budget
        return budget

    # The port.

    async def admit(self, request: AdmissionRequest, now: float) -> AdmissionResult:
        self._sweep(now)
        refusals = [f"unseeded:{c.budget_id}" for c in request.budgets if c.seed_key not in self._seeded][:1]
        states = tuple(self._sum(check.read_keys, now) for check in request.budgets)
        for check, state in zip(request.budgets, states, strict=True):
            if not admit(self._budget(check), state, request.estimate, now).admitted:
                refusals.append(f"budget:{check.budget_id}")
        outcomes, taken = self._check_rates(request.rates, now, refusals)
        active = self._check_slots(request.slots, now, refusals)
        if refusals:
            outcomes = [
                self._untaken(rate, outcome, now) for rate, outcome in zip(request.rates, outcomes, strict=True)
            ]
        else:
            self._apply(request, now, taken)
        return AdmissionResult(not refusals, refusals[0] if refusals else None, states, tuple(outcomes), active)

    def _check_rates(
        self, rates: Sequence[RateCheck], now: float, refusals: list[str]
    ) -> tuple[list[RateOutcome], dict[str, _Rate]]:
        outcomes: list[RateOutcome] = []
        taken: dict[str, _Rate] = {}
        for rate in rates:
            limit = ratelimit.RateLimit(rate.limit, rate.period)
            current = taken.get(rate.key) or self._rate(rate.key, now)
            state = ratelimit.RateState() if current is None else current.state
            result = ratelimit.check(limit, state, rate.cost, now)
            if result.allowed:
                taken[rate.key] = _Rate(limit, result.state)
                outcomes.append(RateOutcome(rate.key, True, result.remaining, result.reset_seconds, 0.0))
                continue
            retry = result.retry_after
            if retry is None:  # the cost can never fit; say when it would if the limit allowed it
                retry = max(state.tat, now) + rate.cost * limit.interval - limit.period - now
            outcomes.append(RateOutcome(rate.key, False, result.remaining, result.reset_seconds, retry))
            refusals.append(f"rate:{rate.key}")
        return outcomes, taken

    def _untaken(self, rate: RateCheck, outcome: RateOutcome, now: float) -> RateOutcome:
        """An allowed rate of a refused request: nothing was taken, so report the bucket as it is."""
        if not outcome.allowed:
            return outcome
        current = self._rate(rate.key, now)
        state = ratelimit.RateState() if current is None else current.state
        view = ratelimit.peek(ratelimit.RateLimit(rate.limit, rate.period), state, now)
        return RateOutcome(rate.key, True, view.remaining, view.reset_seconds, 0.0)

    def _check_slots(self, slots: Sequence[SlotCheck], now: float, refusals: list[str]) -> tuple[int, ...]:
        active: list[int] = []
        taken: dict[str, int] = {}
        for slot in slots:
            count = len(self._leases(slot.key, now)) + taken.get(slot.key, 0)
            active.append(count)
            if count >= slot.max_active:
                refusals.append(f"slot:{slot.key}")
            else:
                taken[slot.key] = taken.get(slot.key, 0) + 1
        return tuple(active)

    def _apply(self, request: AdmissionRequest, now: float, rates: dict[str, _Rate]) -> None:
        rid, estimate, expires_at = request.reservation_id, request.estimate, request.expires_at
        for check in request.budgets:
            counter = self._counter(check.write_key, now, check.retain_until)
            counter.seeded = True
            counter.state = counter.state.reserve(estimate)
            counter.holds[rid] = (expires_at, estimate)
            heapq.heappush(counter.expiries, (expires_at, rid))
        for key, rate in rates.items():
            old = self._rates.get(key)
            rate.keep_until = max(
                0.0 if old is None else old.keep_until, rate.state.tat + rate.limit.period, expires_at
            )
            self._rates[key] = rate
        for slot in request.slots:
            self._slots[slot.key][rid] = expires_at

    async def settle(self, settlement: Settlement, now: float) -> None:
        self._sweep(now)
        rid = settlement.reservation_id
        if rid in self._settled:
            return
        until = now + self._settled_ttl
        self._settled[rid] = until
        self._settled_order.append((until, rid))
        for key in settlement.budget_write_keys:
            counter = self._counter(key, now)
            hold = counter.holds.pop(rid, None)
            counter.state = counter.state.settle(NOTHING if hold is None else hold[1], settlement.actual)
        for key in settlement.slot_keys:
            self._leases(key, now).pop(rid, None)
        for key, delta in settlement.token_corrections:
            rate = self._rate(key, now)
            if rate is not None:
                rate.state = ratelimit.adjust(rate.limit, rate.state, delta, now)
                rate.keep_until = max(rate.keep_until, rate.state.tat + rate.limit.period)

    async def budget_state(self, check: BudgetCheck, now: float) -> BudgetState:
        if check.seed_key not in self._seeded:
            raise CounterStoreUnseeded(f"budget {check.budget_id!r} is not seeded")
        self._sweep(now)
        return self._sum(check.read_keys, now)

    async def restore(self, seeds: Sequence[BudgetSeed]) -> None:
        for seed in seeds:
            for part in seed.counters:
                counter = self._counters.get(part.key)
                if counter is None:
                    counter = self._counters[part.key] = _Counter(math.inf)
                spent = counter.state.spent
                spent = _at_least(spent, part.ledger) if counter.seeded else spent + part.ledger
                counter.state, counter.seeded = BudgetState(spent, counter.state.reserved), True
                self._retain(part.key, counter, part.retain_until)
            self._seeded.add(seed.seed_key)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None
