"""The counter store's circuit breaker, with a fake store and a fake clock: it trips on an outage,
not on a burst whose slow replies still arrive; fails fast while open; probes one call at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal

import pytest

from costwarden.config.governance import BreakerConfig
from costwarden.domain.admission import AdmissionRequest, AdmissionResult, BudgetCheck, BudgetSeed, Settlement
from costwarden.domain.budget import Amount, BudgetState
from costwarden.ports import CounterStoreCircuitOpen, CounterStoreUnavailable
from costwarden.storage.breaker import BreakerState, CounterBreaker
from costwarden.storage.factory import open_counters
from costwarden.storage.memory_counters import MemoryCounters
from costwarden.storage.redis_counters import RedisCounters
from tests.unit.clock import Clock

REQUEST = AdmissionRequest("r1", Amount(Decimal("0.01"), 10, 1), expires_at=100.0)
ADMITTED = AdmissionResult(True, None, (), (), ())


class FakeStore:
    """Answers, or fails as unreachable, as the test says; counts the calls that reached it."""

    def __init__(self) -> None:
        self.down = False
        self.error: Exception | None = None
        self.calls = 0
        self.gate: asyncio.Event | None = None  # when set, calls wait for it (a slow reply)

    async def _answer(self) -> None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        if self.down:
            raise CounterStoreUnavailable("redis: timeout")

    async def admit(self, request: AdmissionRequest, now: float) -> AdmissionResult:
        await self._answer()
        return ADMITTED

    async def settle(self, settlement: Settlement, now: float) -> None:
        await self._answer()

    async def budget_state(self, check: BudgetCheck, now: float) -> BudgetState:
        await self._answer()
        return BudgetState()

    async def restore(self, seeds: Sequence[BudgetSeed], announce_at: float | None = None) -> int:
        await self._answer()
        return 0

    async def ping(self) -> bool:
        self.calls += 1
        return not self.down

    async def close(self) -> None:
        return None


CHECK = BudgetCheck("b", ("k",), "k", None, None, None, True, 0.0, "b")


def state(b: CounterBreaker) -> BreakerState:
    return b.state


def breaker(store: FakeStore, clock: Clock) -> CounterBreaker:
    return CounterBreaker(store, failures=3, outage_seconds=1.0, open_seconds=2.0, clock=clock)


async def fail(b: CounterBreaker, times: int, clock: Clock, step: float) -> None:
    for _ in range(times):
        clock.now += step
        with pytest.raises(CounterStoreUnavailable):
            await b.admit(REQUEST, 0.0)


async def test_an_outage_opens_it_and_then_calls_fail_fast_without_reaching_the_store() -> None:
    store, clock = FakeStore(), Clock(1000.0)
    b = breaker(store, clock)
    assert await b.admit(REQUEST, 0.0) == ADMITTED
    store.down = True
    await fail(b, 3, clock, 0.5)  # 3 failures over 1.5 s without an answer
    assert state(b) is BreakerState.OPEN and b.trips == 1
    reached = store.calls
    for _ in range(50):
        with pytest.raises(CounterStoreCircuitOpen):
            await b.admit(REQUEST, 0.0)
        with pytest.raises(CounterStoreCircuitOpen):
            await b.settle(Settlement("r1", (), Amount(), Amount()), 0.0)
        with pytest.raises(CounterStoreCircuitOpen):
            await b.budget_state(CHECK, 0.0)
        with pytest.raises(CounterStoreCircuitOpen):
            await b.restore(())
    assert store.calls == reached  # open: nothing waits for the store


async def test_failures_with_answers_in_between_never_trip_it() -> None:
    """A burst: some calls time out, others still get answers; that is load, not an outage."""
    store, clock = FakeStore(), Clock(1000.0)
    b = breaker(store, clock)
    for _ in range(20):
        store.down = True
        await fail(b, 2, clock, 0.6)
        store.down = False
        clock.now += 0.1
        assert await b.admit(REQUEST, 0.0) == ADMITTED
    assert state(b) is BreakerState.CLOSED and b.trips == 0


async def test_many_failures_within_the_outage_time_do_not_trip_it() -> None:
    """200 concurrent requests timing out at once after the last answer 0.5 s ago: not yet an outage."""
    store, clock = FakeStore(), Clock(1000.0)
    b = breaker(store, clock)
    await b.admit(REQUEST, 0.0)
    store.down = True
    clock.now += 0.5
    await fail(b, 200, clock, 0.0)
    assert state(b) is BreakerState.CLOSED
    clock.now += 0.5  # now a full second without any answer
    await fail(b, 1, clock, 0.0)
    assert state(b) is BreakerState.OPEN


async def test_too_few_failures_do_not_trip_it_however_long() -> None:
    store, clock = FakeStore(), Clock(1000.0)
    b = breaker(store, clock)
    store.down = True
    await fail(b, 2, clock, 30.0)
    assert state(b) is BreakerState.CLOSED


async def test_errors_that_are_answers_do_not_count() -> None:
    store, clock = FakeStore(), Clock(1000.0)
    b = breaker(store, clock)
    store.error = ValueError("the script failed")
    for _ in range(10):
        clock.now += 1.0
        with pytest.raises(ValueError):
            await b.admit(REQUEST, 0.0)
    assert state(b) is BreakerState.CLOSED


async def test_after_the_cool_down_one_probe_closes_it_on_success() -> None:
    store, clock = FakeStore(), Clock(1000.0)
    b = breaker(store, clock)
    store.down = True
    await fail(b, 3, clock, 0.5)
    clock.now += 1.9
    assert state(b) is BreakerState.OPEN
    clock.now += 0.1
    assert state(b) is BreakerState.HALF_OPEN
    store.down = False
    store.gate = asyncio.Event()
    probe = asyncio.create_task(b.admit(REQUEST, 0.0))
    await asyncio.sleep(0)
    assert store.calls == 4  # the probe reached the store
    for _ in range(5):  # while it is out, the others fail fast
        with pytest.raises(CounterStoreCircuitOpen):
            await b.admit(REQUEST, 0.0)
    assert store.calls == 4
    store.gate.set()
    assert await probe == ADMITTED
    assert state(b) is BreakerState.CLOSED
    assert await b.admit(REQUEST, 0.0) == ADMITTED


async def test_a_failed_probe_opens_it_again_for_a_full_cool_down() -> None:
    store, clock = FakeStore(), Clock(1000.0)
    b = breaker(store, clock)
    store.down = True
    await fail(b, 3, clock, 0.5)
    clock.now += 2.0
    await fail(b, 1, clock, 0.0)  # the probe
    assert state(b) is BreakerState.OPEN and b.trips == 1
    clock.now += 1.5
    with pytest.raises(CounterStoreCircuitOpen):
        await b.admit(REQUEST, 0.0)
    clock.now += 0.5
    assert state(b) is BreakerState.HALF_OPEN


async def test_a_cancelled_probe_lets_the_next_call_probe() -> None:
    store, clock = FakeStore(), Clock(1000.0)
    b = breaker(store, clock)
    store.down = True
    await fail(b, 3, clock, 0.5)
    clock.now += 2.0
    store.down, store.gate = False, asyncio.Event()
    probe = asyncio.create_task(b.admit(REQUEST, 0.0))
    await asyncio.sleep(0)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    store.gate = None
    assert await b.admit(REQUEST, 0.0) == ADMITTED
    assert state(b) is BreakerState.CLOSED


async def test_ping_always_asks_the_store_and_never_trips_it() -> None:
    store, clock = FakeStore(), Clock(1000.0)
    b = breaker(store, clock)
    store.down = True
    for _ in range(10):
        clock.now += 1.0
        assert await b.ping() is False
    assert state(b) is BreakerState.CLOSED
    await fail(b, 3, clock, 0.5)
    store.down = False
    assert await b.ping() is True
    assert store.calls == 10 + 3 + 1


async def test_the_factory_wraps_redis_only_and_only_when_enabled() -> None:
    assert isinstance(open_counters(None), MemoryCounters)
    wrapped = open_counters("redis://127.0.0.1:1/0", BreakerConfig(failures=5))
    assert isinstance(wrapped, CounterBreaker) and isinstance(wrapped.store, RedisCounters)
    bare = open_counters("redis://127.0.0.1:1/0", BreakerConfig(enabled=False))
    assert isinstance(bare, RedisCounters)
    await wrapped.close()
    await bare.close()
