"""The counter store of a single gateway process: plain dicts and integer units (USD in
nano-dollars), deciding with exactly the rules of `domain.budget.admit` (tested against it) and the
domain's `ratelimit.check/adjust`, so it is the reference for other adapters.
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
    Refusal,
    Refused,
    Settlement,
    SlotCheck,
    next_generation,
)
from costwarden.domain.budget import Amount, BudgetState
from costwarden.domain.money import to_nanos
from costwarden.ports import CounterStoreUnseeded

Units = tuple[int, int, int]  # USD in nano-dollars, tokens, requests


def _usd(nanos: int) -> Decimal:
    return Decimal(nanos).scaleb(-9)  # = money.from_nanos, without its (no-op) quantize


def _state(v: Sequence[int]) -> BudgetState:
    """Six counter units (spent usd tokens requests, reserved usd tokens requests) as the port's value."""
    return BudgetState(Amount(_usd(v[0]), v[1], v[2]), Amount(_usd(v[3]), v[4], v[5]))


def _units(amount: Amount) -> Units:
    return to_nanos(amount.usd), amount.tokens, amount.requests


def _exceeded(limits: tuple[int | None, int | None, int | None], v: Sequence[int], want: Units) -> bool:
    """domain.budget._exceeded in integer units: the settled spend reached a limit, or this
    request's maximum on top of everything spent and held could pass it."""
    for u in range(3):
        limit = limits[u]
        if limit is not None and (v[u] >= limit or v[u] + v[u + 3] + want[u] > limit):
            return True
    return False


@dataclass(slots=True)
class _Counter:
    """One budget counter: six units `v` (spent usd tokens requests, reserved usd tokens
    requests), its live holds (reservation id -> expiry, units) and a heap of hold expiries
    (entries of settled holds stay until they pop). `seeded`: created by an admit or a rebuild (its
    spend is the window's); False when a settle created it (after the store lost its state, it
    holds only what settled since)."""

    retain_until: float
    seeded: bool = False
    v: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0, 0])
    # Made when first written (a start seeds tens of thousands of counters that most never write):
    seen: list[int] | None = None  # the highest ledger figure restored (net); None: zeros
    pre: list[int] | None = None  # settled charges a catch-up also reads; None: zeros
    holds: dict[str, tuple[float, Units]] | None = None
    expiries: list[tuple[float, str]] | None = None

    def release(self, held: Units) -> None:
        """Drop a hold from the reserved units, floored at zero like Amount.__sub__."""
        v = self.v
        v[3], v[4], v[5] = max(0, v[3] - held[0]), max(0, v[4] - held[1]), max(0, v[5] - held[2])

    def purge(self, now: float) -> None:
        expiries, holds = self.expiries, self.holds
        while expiries and holds is not None and expiries[0][0] <= now:
            _, rid = heapq.heappop(expiries)
            hold = holds.get(rid)
            if hold is not None and hold[0] <= now:
                del holds[rid]
                self.release(hold[1])


@dataclass(slots=True)
class _Rate:
    """A GCRA bucket, kept until it is full again and the requests it admitted could settle."""

    limit: ratelimit.RateLimit
    state: ratelimit.RateState
    keep_until: float = 0.0


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
        self._seeded: set[str] = set()  # seed keys of budgets a rebuild has seeded
        self._limits: dict[tuple[int, float], ratelimit.RateLimit] = {}  # validated once per limit
        self._generation = 0  # of the budget definitions (see `restore`)

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

    def _sum(self, read_keys: Sequence[str], now: float) -> list[int]:
        if len(read_keys) == 1:  # a calendar window: one counter
            counter = self._counters.get(read_keys[0])
            if counter is None:
                return [0, 0, 0, 0, 0, 0]
            counter.purge(now)
            return list(counter.v)
        total = [0, 0, 0, 0, 0, 0]
        for key in read_keys:
            counter = self._counters.get(key)
            if counter is not None:
                counter.purge(now)
                total = [a + b for a, b in zip(total, counter.v, strict=True)]
        return total

    def _leases(self, key: str, now: float) -> dict[str, float]:
        leases = self._slots.setdefault(key, {})
        for rid in [rid for rid, until in leases.items() if until <= now]:
            del leases[rid]
        return leases

    def _limit(self, rate: RateCheck) -> ratelimit.RateLimit:
        limit = self._limits.get((rate.limit, rate.period))
        if limit is None:
            if len(self._limits) >= 1024:
                self._limits.clear()
            limit = self._limits[rate.limit, rate.period] = ratelimit.RateLimit(rate.limit, rate.period)
        return limit

    def _rate(self, key: str, now: float) -> _Rate | None:
        rate = self._rates.get(key)
        if rate is not None and rate.keep_until <= now:
            del self._rates[key]
            return None
        return rate

    # The port.

    async def admit(self, request: AdmissionRequest, now: float) -> AdmissionResult:
        if request.generation is not None and request.generation != self._generation:
            return AdmissionResult.stale(request, self._generation)
        self._sweep(now)
        refusals: list[tuple[Refused, int]] = []
        want = request.units
        sums = []
        for i, check in enumerate(request.budgets):
            if check.seed_key not in self._seeded and (not refusals or refusals[0][0] is not Refused.UNSEEDED):
                refusals.insert(0, (Refused.UNSEEDED, i))  # before any other refusal
            v = self._sum(check.read_keys, now)
            sums.append(v)
            if check.enforce and _exceeded(check.limits, v, want):
                refusals.append((Refused.BUDGET, i))
        outcomes, taken = self._check_rates(request.rates, now, refusals) if request.rates else ([], {})
        active = self._check_slots(request.slots, now, refusals) if request.slots else ()
        states = tuple(_state(v) for v in sums)
        if refusals:
            outcomes = [
                self._untaken(rate, outcome, now) for rate, outcome in zip(request.rates, outcomes, strict=True)
            ]
            return AdmissionResult(False, Refusal.of(request, *refusals[0]), states, tuple(outcomes), active)
        self._apply(request, now, taken)
        return AdmissionResult(True, None, states, tuple(outcomes), active)

    def _check_rates(
        self, rates: Sequence[RateCheck], now: float, refusals: list[tuple[Refused, int]]
    ) -> tuple[list[RateOutcome], dict[str, _Rate]]:
        outcomes: list[RateOutcome] = []
        taken: dict[str, _Rate] = {}
        for i, rate in enumerate(rates):
            limit = self._limit(rate)
            current = taken.get(rate.key) or self._rate(rate.key, now)
            state = ratelimit.RateState() if current is None else current.state
            result = ratelimit.check(limit, state, rate.cost, now)
            if result.allowed:
                taken[rate.key] = _Rate(limit, result.state)
                outcomes.append(RateOutcome(rate.key, True, result.remaining, result.reset_seconds, 0.0))
                continue
            retry = result.retry_after
            if retry is None:  # the cost can never fit; say when it would if the limit allowed it
                retry = ratelimit.wait(limit, state, rate.cost, now)
            outcomes.append(RateOutcome(rate.key, False, result.remaining, result.reset_seconds, retry))
            refusals.append((Refused.RATE, i))
        return outcomes, taken

    def _untaken(self, rate: RateCheck, outcome: RateOutcome, now: float) -> RateOutcome:
        """An allowed rate of a refused request: nothing was taken, so report the bucket as it is."""
        if not outcome.allowed:
            return outcome
        current = self._rate(rate.key, now)
        state = ratelimit.RateState() if current is None else current.state
        view = ratelimit.peek(self._limit(rate), state, now)
        return RateOutcome(rate.key, True, view.remaining, view.reset_seconds, 0.0)

    def _check_slots(
        self, slots: Sequence[SlotCheck], now: float, refusals: list[tuple[Refused, int]]
    ) -> tuple[int, ...]:
        active: list[int] = []
        taken: dict[str, int] = {}
        for i, slot in enumerate(slots):
            count = len(self._leases(slot.key, now)) + taken.get(slot.key, 0)
            active.append(count)
            if count >= slot.max_active:
                refusals.append((Refused.SLOT, i))
            else:
                taken[slot.key] = taken.get(slot.key, 0) + 1
        return tuple(active)

    def _apply(self, request: AdmissionRequest, now: float, rates: dict[str, _Rate]) -> None:
        rid, want, expires_at = request.reservation_id, request.units, request.expires_at
        for check in request.budgets:
            counter = self._counter(check.write_key, now, check.retain_until)
            counter.seeded = True
            v = counter.v
            v[3], v[4], v[5] = v[3] + want[0], v[4] + want[1], v[5] + want[2]
            if counter.holds is None or counter.expiries is None:
                counter.holds, counter.expiries = {}, []
            counter.holds[rid] = (expires_at, want)
            heapq.heappush(counter.expiries, (expires_at, rid))
        for key, rate in rates.items():
            old = self._rates.get(key)
            rate.keep_until = max(
                0.0 if old is None else old.keep_until, rate.state.seconds + rate.limit.period, expires_at
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
        actual = _units(settlement.actual) if settlement.budget_write_keys else (0, 0, 0)
        for key in settlement.budget_write_keys:
            counter = self._counter(key, now)
            hold = None if counter.holds is None else counter.holds.pop(rid, None)
            if hold is not None:
                counter.release(hold[1])
            v = counter.v
            v[0], v[1], v[2] = v[0] + actual[0], v[1] + actual[1], v[2] + actual[2]
        for key in settlement.caught_up_keys:
            counter = self._counter(key, now)
            pre = counter.pre = counter.pre or [0, 0, 0]
            pre[0], pre[1], pre[2] = pre[0] + actual[0], pre[1] + actual[1], pre[2] + actual[2]
        for key in settlement.slot_keys:
            self._leases(key, now).pop(rid, None)
        for key, delta in settlement.token_corrections:
            rate = self._rate(key, now)
            if rate is not None:
                rate.state = ratelimit.adjust(rate.limit, rate.state, delta, now)
                rate.keep_until = max(rate.keep_until, rate.state.seconds + rate.limit.period)

    async def budget_state(self, check: BudgetCheck, now: float) -> BudgetState:
        if check.seed_key not in self._seeded:
            raise CounterStoreUnseeded(f"budget {check.budget_id!r} is not seeded")
        self._sweep(now)
        return _state(self._sum(check.read_keys, now))

    async def restore(self, seeds: Sequence[BudgetSeed], announce_at: float | None = None) -> int:
        for seed in seeds:
            for part in seed.counters:
                counter, amount = self._counters.get(part.key), part.ledger
                fresh = counter is None
                if counter is None:
                    counter = self._counters[part.key] = _Counter(math.inf)
                if not fresh or amount.usd or amount.tokens or amount.requests:  # else it stays at zero
                    self._restore(counter, _units(amount), seed.catch_up)
                counter.seeded = counter.seeded or not seed.catch_up
                self._retain(part.key, counter, part.retain_until)
            if not seed.catch_up:
                self._seeded.add(seed.seed_key)
        if announce_at is not None:
            self._generation = next_generation(self._generation, announce_at)
        return self._generation

    @staticmethod
    def _restore(counter: _Counter, ledger: Units, catch_up: bool) -> None:
        """Raise the counter to the ledger's figure (see `CounterStore.restore`)."""
        v, seen, pre = counter.v, counter.seen or [0, 0, 0], counter.pre or (0, 0, 0)
        counter.seen = seen
        for u in range(3):
            net = ledger[u] - pre[u]  # settles charged the rest already
            if catch_up:
                v[u] += max(0, net - seen[u])
            else:
                v[u] = max(v[u], ledger[u]) if counter.seeded else v[u] + ledger[u]
            seen[u] = max(seen[u], net)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None
