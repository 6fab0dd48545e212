"""One suite for the CounterStore port, run against MemoryCounters and RedisCounters (Redis on
127.0.0.1:6379), and a differential property test of both against the `Ledgerless` model.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from typing import cast

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costwarden.domain import ratelimit
from costwarden.domain.admission import (
    AdmissionRequest,
    BudgetCheck,
    BudgetSeed,
    CounterSeed,
    RateCheck,
    Refusal,
    Refused,
    Settlement,
    SlotCheck,
)
from costwarden.domain.budget import (
    NOTHING,
    Action,
    Amount,
    Budget,
    BudgetScope,
    BudgetState,
    Ledgerless,
    Reservation,
    counter_key,
    seed_key,
)
from costwarden.domain.money import quantize
from costwarden.domain.window import Unit, Window
from costwarden.ports import CounterStore, CounterStoreUnavailable
from costwarden.storage.memory_counters import MemoryCounters
from costwarden.storage.redis_counters import RedisCounters
from tests.conftest import need, port_open

START = 4_000_000_000.0  # 2096: any time works (TTLs are relative to `now`); this one is clearly fake
REDIS = "redis://127.0.0.1:6379/0"


def need_redis() -> None:
    need(port_open("127.0.0.1", 6379), "Redis on 127.0.0.1:6379")


async def drop_namespace(namespace: str) -> None:
    client = aioredis.Redis.from_url(REDIS)
    try:
        keys = [key async for key in client.scan_iter(match=f"{namespace}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def open_redis(patient: bool = False) -> tuple[RedisCounters, str]:
    """`patient`: socket timeouts of 10 s, for tests of exactness under bursts, not of outages."""
    need_redis()
    namespace = f"cwtest:{uuid.uuid4().hex[:12]}:"
    wait, connect = (10.0, 10.0) if patient else (0.5, 1.0)
    counters = RedisCounters(REDIS, namespace=namespace, clock=lambda: START, timeout=wait, connect_timeout=connect)
    return counters, namespace


async def seeded(store: CounterStore, *seed_keys: str) -> CounterStore:
    """Mark budgets seeded with nothing in the ledger (a rebuild of an empty ledger)."""
    await store.restore([BudgetSeed(key, ()) for key in seed_keys])
    return store


# The budgets of this suite, seeded as the gateway seeds them at start.
SEEDED = ("a", "b", "watch", "roll", "race", "other")


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[CounterStore]:
    if request.param == "memory":
        yield await seeded(MemoryCounters(), *SEEDED)
        return
    counters, namespace = await open_redis()
    try:
        yield await seeded(counters, *SEEDED)
    finally:
        await counters.close()
        await drop_namespace(namespace)


def usd(text: str, requests: int = 1) -> Amount:
    return Amount(Decimal(text), 0, requests)


def budget(bid: str, usd: str | None = "1", tokens: int | None = None, requests: int | None = None) -> BudgetCheck:
    usd_, tokens_, requests_ = (None if n is None else Decimal(n) for n in (usd, tokens, requests))
    return BudgetCheck(bid, (f"{bid}|w",), f"{bid}|w", usd_, tokens_, requests_, True, START + 86_400, bid)


def ask(
    rid: str,
    estimate: Amount,
    budgets: tuple[BudgetCheck, ...] = (),
    rates: tuple[RateCheck, ...] = (),
    slots: tuple[SlotCheck, ...] = (),
    expires_at: float = START + 600,
) -> AdmissionRequest:
    return AdmissionRequest(rid, estimate, expires_at, budgets, rates, slots)


async def state(store: CounterStore, check: BudgetCheck, now: float = START) -> BudgetState:
    return await store.budget_state(check, now)


async def test_admission_is_all_or_nothing(store: CounterStore) -> None:
    a, b = budget("a", "10"), budget("b", "1")
    rpm, slot = RateCheck("rpm|key|k", 10, 60.0, 1), SlotCheck("slot|key|k", 5)
    first = await store.admit(ask("r1", usd("0.6"), (a, b), (rpm,), (slot,)), START)
    assert first.admitted and first.refused_by is None
    assert first.rates[0].remaining == 9 and first.active_slots == (0,)
    second = await store.admit(ask("r2", usd("0.6"), (a, b), (rpm,), (slot,)), START)
    assert not second.admitted and second.refused_by == Refusal(Refused.BUDGET, 1, "b")
    assert second.budget_states == (BudgetState(reserved=usd("0.6")), BudgetState(reserved=usd("0.6")))
    assert second.rates[0].allowed and second.rates[0].remaining == 9  # nothing was taken
    assert await state(store, a) == BudgetState(reserved=usd("0.6"))
    third = await store.admit(ask("r3", usd("0.1"), (a,), (rpm,), (slot,)), START)
    assert third.admitted and third.rates[0].remaining == 8 and third.active_slots == (1,)
    # Refused by the rate, then by the slot: still nothing held on `a`.
    tight = RateCheck("rpm|key|k", 10, 60.0, 9)
    refused = await store.admit(ask("r4", usd("0.1"), (a,), (tight,), (slot,)), START)
    assert refused.refused_by == Refusal(Refused.RATE, 0, "rpm|key|k") and refused.rates[0].retry_after > 0
    full = await store.admit(ask("r5", usd("0.1"), (a,), (rpm,), (SlotCheck("slot|key|k", 2),)), START)
    assert full.refused_by == Refusal(Refused.SLOT, 0, "slot|key|k") and full.active_slots == (2,)
    assert await state(store, a) == BudgetState(reserved=usd("0.7", 2))


@pytest.mark.parametrize("unit", ["usd", "tokens", "requests"])
async def test_limits_in_each_unit(store: CounterStore, unit: str) -> None:
    check = {"usd": budget("b"), "tokens": budget("b", None, 1000), "requests": budget("b", None, None, 3)}[unit]
    estimate = Amount(Decimal("0.3"), 300, 1)
    admitted = [(await store.admit(ask(f"r{i}", estimate, (check,)), START)).admitted for i in range(5)]
    assert admitted == [True, True, True, False, False]
    # Settled spend at the limit refuses even a free request.
    for i in range(3):
        await store.settle(Settlement(f"r{i}", (check.write_key,), estimate, Amount(Decimal(1), 1000, 3)), START)
    free = await store.admit(ask("free", NOTHING, (check,)), START)
    assert not free.admitted and free.refused_by == Refusal(Refused.BUDGET, 0, "b")


async def test_alert_only_never_refuses_but_holds(store: CounterStore) -> None:
    check = replace(budget("watch"), enforce=False)
    for i in range(4):
        assert (await store.admit(ask(f"r{i}", usd("0.5"), (check,)), START)).admitted
    assert await state(store, check) == BudgetState(reserved=usd("2", 4))


async def test_holds_and_leases_expire(store: CounterStore) -> None:
    check, slot = budget("b", "1"), SlotCheck("slot|team|ml", 1)
    held = await store.admit(ask("r1", usd("0.8"), (check,), slots=(slot,), expires_at=START + 10), START)
    assert held.admitted
    assert not (await store.admit(ask("r2", usd("0.8"), (check,)), START + 9.999)).admitted
    full = await store.admit(ask("r3", NOTHING, slots=(slot,)), START + 9)
    assert full.refused_by == Refusal(Refused.SLOT, 0, "slot|team|ml")
    assert await state(store, check, START + 9.5) == BudgetState(reserved=usd("0.8"))
    assert await state(store, check, START + 10) == BudgetState()  # expires_at <= now: released
    later = await store.admit(ask("r4", usd("0.8"), (check,), slots=(slot,)), START + 10)
    assert later.admitted and later.active_slots == (0,)


async def test_settle_charges_actual_once_and_only_actual_after_expiry(store: CounterStore) -> None:
    check, slot, key = budget("b"), SlotCheck("slot|key|k", 1), (budget("b").write_key,)
    assert (await store.admit(ask("r1", usd("0.5"), (check,), expires_at=START + 5), START)).admitted
    assert (await store.admit(ask("r2", usd("0.3"), (check,), slots=(slot,)), START)).admitted
    await store.settle(Settlement("r1", key, usd("0.5"), usd("0.2")), START + 6)  # its hold expired
    assert await state(store, check, START + 6) == BudgetState(usd("0.2"), usd("0.3"))
    for _ in range(3):  # idempotent
        await store.settle(Settlement("r2", key, usd("0.3"), usd("0.1"), (slot.key,)), START + 7)
    assert await state(store, check, START + 7) == BudgetState(usd("0.3", 2))
    assert (await store.admit(ask("r3", NOTHING, slots=(slot,)), START + 7)).active_slots == (0,)


async def test_rolling_window_sums_its_buckets(store: CounterStore) -> None:
    window = Window.rolling(3600, 6)

    def check_at(now: float) -> BudgetCheck:
        keys = tuple(f"roll|{k}" for k in window.bucket_keys(now))
        return replace(budget("roll"), read_keys=keys, write_key=keys[-1], retain_until=window.retain_until(now))

    for i, at in enumerate((START, START + 700, START + 1500)):
        result = await store.admit(ask(f"r{i}", usd("0.3"), (check_at(at),), expires_at=at + 60), at)
        assert result.admitted
        await store.settle(Settlement(f"r{i}", (check_at(at).write_key,), usd("0.3"), usd("0.3")), at + 1)
    assert await state(store, check_at(START + 2000), START + 2000) == BudgetState(usd("0.9", 3))
    assert not (await store.admit(ask("x", usd("0.3"), (check_at(START + 2000),)), START + 2000)).admitted
    # An hour on, the first bucket has aged out: room for one more.
    later = START + 3300
    assert await state(store, check_at(later), later) == BudgetState(usd("0.6", 2))
    assert (await store.admit(ask("y", usd("0.3"), (check_at(later),), expires_at=later + 60), later)).admitted


async def test_gcra_matches_the_domain(store: CounterStore) -> None:
    rng = random.Random(7)
    limit = ratelimit.RateLimit(50, 60.0)
    expected = ratelimit.RateState()
    now = START
    for i in range(300):
        now += rng.choice([0.0, 0.0, 0.05, 0.7, 3.0, 20.0])
        cost = rng.choice([1, 2, 5, 13, 60])
        result = await store.admit(ask(f"g{i}", NOTHING, rates=(RateCheck("tpm|k", 50, 60.0, cost),)), now)
        want = ratelimit.check(limit, expected, cost, now)
        outcome = result.rates[0]
        assert (outcome.allowed, outcome.remaining, outcome.reset_seconds) == (
            want.allowed,
            want.remaining,
            want.reset_seconds,
        )
        if want.allowed:
            assert outcome.retry_after == 0.0
        elif want.retry_after is not None:
            assert outcome.retry_after == want.retry_after
        else:  # a cost that can never fit still gets a finite answer
            assert math.isfinite(outcome.retry_after) and outcome.retry_after > 0
        expected = want.state
        if want.allowed and rng.random() < 0.3:
            delta = rng.randint(-cost, 10)
            await store.settle(Settlement(f"g{i}", (), NOTHING, NOTHING, token_corrections=(("tpm|k", delta),)), now)
            expected = ratelimit.adjust(limit, expected, delta, now)


async def test_restore_raises_spend_and_keeps_holds(store: CounterStore) -> None:
    check, other = budget("b"), budget("other")
    await store.admit(ask("r1", usd("0.2"), (check,)), START)
    await store.settle(Settlement("r0", (check.write_key,), NOTHING, usd("0.5")), START)
    await store.restore(
        [
            BudgetSeed("b", (CounterSeed(check.write_key, Amount(Decimal("0.75"), 10, 0), START + 3600),)),
            BudgetSeed("other", (CounterSeed(other.write_key, usd("0.1"), START + 3600),)),
        ]
    )
    # Raised to the ledger's figure in usd and tokens; the counter's 1 request is more than the ledger's 0.
    assert await state(store, check) == BudgetState(Amount(Decimal("0.75"), 10, 1), usd("0.2"))
    assert await state(store, other) == BudgetState(usd("0.1"))
    assert not (await store.admit(ask("r2", usd("0.1"), (check,)), START)).admitted
    assert await store.ping()


# The differential property test: both adapters and the reference model, step by step.

BUDGETS = (
    Budget("team-day", BudgetScope.of({"team": "ml"}), Window.calendar(Unit.DAY, "Europe/Berlin"), Decimal(5)),
    Budget("llm-roll", BudgetScope.of({"deployment": "llm"}), Window.rolling(3600, 6), Decimal(3), limit_tokens=40_000),
    Budget("ml-llm", BudgetScope.of({"team": "ml"}), Window.calendar(Unit.HOUR), Decimal(2), limit_requests=12),
    Budget("everyone", BudgetScope(), Window.calendar(Unit.DAY), Decimal(1), action=Action.ALERT_ONLY),
)


def check_for(b: Budget, now: float) -> BudgetCheck:
    """As the admit stage builds it (chain/policy.py)."""
    seed = seed_key(b)
    keys = tuple(counter_key(seed, k) for k in b.window.bucket_keys(now))
    write = counter_key(seed, b.window.key(now))
    return BudgetCheck(b.id, keys, write, *b.limits(), b.action is Action.BLOCK, b.window.retain_until(now), seed)


def written(held: Reservation) -> tuple[str, ...]:
    """The store's counters of a model reservation (the store keys them by seed key)."""
    seeds = {b.id: seed_key(b) for b in BUDGETS}
    return tuple(counter_key(seeds[b], k) for b, k in zip(held.budget_ids, held.window_keys, strict=True))


STEP = st.tuples(
    st.sampled_from([0.0, 1.0, 30.0, 90.0, 400.0, 3000.0]),
    st.sampled_from(["reserve", "reserve", "settle", "settle twice"]),
    st.sampled_from([{"team": "ml", "deployment": "llm"}, {"team": "ml", "deployment": "emb"}, {"deployment": "llm"}]),
    st.integers(0, 150),
    st.floats(0, 1.5),
    st.integers(0, 1000),
)


@pytest.fixture
def redis_up() -> None:
    need_redis()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(STEP, max_size=40))
async def test_adapters_agree_with_the_model(
    redis_up: None, plan: list[tuple[float, str, dict[str, str], int, float, int]]
) -> None:
    remote, namespace = await open_redis()
    stores: tuple[CounterStore, ...] = (MemoryCounters(), remote)
    for one in stores:
        await seeded(one, *(seed_key(b) for b in BUDGETS))
    model, now, open_holds = Ledgerless(BUDGETS), START, []
    try:
        for i, (wait, kind, attributes, cents, share, pick) in enumerate(plan):
            now += wait
            model = model.expire(now)
            if kind == "reserve":
                estimate = Amount(Decimal(cents) / 100, cents * 100, 1)
                matched = [b for b in BUDGETS if b.scope.matches(attributes)]
                before = tuple(model.state(b, now) for b in matched)
                ttl = 60.0 if pick % 2 else 600.0  # holds expire out of order
                model, held, _ = model.reserve(f"r{i}", attributes, estimate, now, ttl)
                request = ask(f"r{i}", estimate, tuple(check_for(b, now) for b in matched), expires_at=now + ttl)
                for store in stores:
                    result = await store.admit(request, now)
                    assert (result.admitted, result.budget_states) == (held is not None, before)
                if held is not None:
                    open_holds.append(held)
            elif open_holds:
                held = open_holds.pop(pick % len(open_holds))
                actual = Amount(quantize(held.amount.usd * Decimal(share)), int(held.amount.tokens * share), 1)
                model = model.settle(held, actual, now)
                for store in stores:
                    for _ in range(2 if kind == "settle twice" else 1):
                        await store.settle(Settlement(held.id, written(held), held.amount, actual), now)
            for b in BUDGETS:
                check = check_for(b, now)
                assert [await store.budget_state(check, now) for store in stores] == [model.state(b, now)] * 2
    finally:
        await remote.close()
        await drop_namespace(namespace)


# Redis only: replicas racing, an unreachable or silent store, and coming back.


async def test_replicas_admit_exactly_what_the_budget_allows(redis_up: None) -> None:
    # Exactness, not outage detection: timeouts a loaded CI machine cannot reach while 200 admits
    # open their connections at once (the default 1 s connect timeout was once exceeded there).
    first, namespace = await open_redis(patient=True)
    await seeded(first, "race")
    replicas = [first] + [
        RedisCounters(REDIS, namespace=namespace, timeout=10.0, connect_timeout=10.0) for _ in range(3)
    ]
    check, each = budget("race", "0.481"), usd("0.013")  # room for exactly 37
    try:
        results = await asyncio.gather(
            *(replicas[i % 4].admit(ask(f"r{i}", each, (check,)), START + i / 1e4) for i in range(200))
        )
        assert sum(r.admitted for r in results) == 37
        assert await state(first, check, START + 1) == BudgetState(reserved=usd("0.481", 37))
    finally:
        for replica in replicas:
            await replica.close()
        await drop_namespace(namespace)


async def test_unreachable_redis_fails_fast() -> None:
    counters = RedisCounters("redis://127.0.0.1:1")
    started = time.perf_counter()
    with pytest.raises(CounterStoreUnavailable):
        await counters.admit(ask("r", usd("0.1"), (budget("b"),)), START)
    assert time.perf_counter() - started < 0.5
    assert not await counters.ping()
    await counters.close()


class Relay:
    """A TCP relay to Redis (or `upstream_port`) that can be down, or silent (accepts, never
    answers), to play outages."""

    def __init__(self, upstream_port: int = 6379) -> None:
        self.upstream_port = upstream_port
        self.port, self.silent, self.server = 0, False, cast(asyncio.Server | None, None)
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, silent: bool = False) -> None:
        self.silent = silent
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        if not self.silent:
            self.tasks.append(asyncio.create_task(self._relay(reader, writer)))

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self.writers.append(up_writer)

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()
        self.writers, self.tasks = [], []


async def test_outage_fails_fast_and_the_client_reconnects(redis_up: None) -> None:
    relay = Relay()
    await relay.start()
    namespace = f"cwtest:{uuid.uuid4().hex[:12]}:"
    counters = RedisCounters(f"redis://127.0.0.1:{relay.port}/0", namespace=namespace, timeout=0.25)
    request = ask("r", usd("0.1"), (budget("b"),))
    try:
        await seeded(counters, "b")
        assert (await counters.admit(request, START)).admitted
        for silent in (False, True):  # down (refused), then silent (timeouts)
            await relay.stop()
            if silent:
                await relay.start(silent=True)
            started = time.perf_counter()
            with pytest.raises(CounterStoreUnavailable):
                await counters.admit(request, START)
            assert time.perf_counter() - started < 0.5
        await relay.stop()
        await relay.start()
        assert await counters.ping()
        assert (await counters.admit(replace(request, reservation_id="r2"), START)).admitted
    finally:
        await counters.close()
        await relay.stop()
        await drop_namespace(namespace)


async def test_scripts_flushed_from_redis_are_loaded_again(redis_up: None) -> None:
    counters, namespace = await open_redis()
    check = budget("b", "1")
    try:
        await seeded(counters, "b")
        assert (await counters.admit(ask("r1", usd("0.1"), (check,)), START)).admitted
        client = aioredis.Redis.from_url(REDIS)
        try:
            await client.script_flush()  # as after a Redis restart: NOSCRIPT on the next EVALSHA
        finally:
            await client.aclose()
        await counters.settle(Settlement("r1", (check.write_key,), usd("0.1"), usd("0.05")), START)
        assert (await counters.admit(ask("r2", usd("0.1"), (check,)), START)).admitted
        assert await state(counters, check) == BudgetState(spent=usd("0.05"), reserved=usd("0.1"))
    finally:
        await counters.close()
        await drop_namespace(namespace)


async def test_a_burst_past_the_connection_limit_queues_and_is_answered(redis_up: None) -> None:
    need_redis()
    namespace = f"cwtest:{uuid.uuid4().hex[:12]}:"
    counters = RedisCounters(REDIS, namespace=namespace, max_connections=2)
    check = budget("b", "100")
    try:
        await seeded(counters, "b")
        results = await asyncio.gather(*(counters.admit(ask(f"r{i}", usd("0.1"), (check,)), START) for i in range(60)))
        assert all(r.admitted for r in results)
        assert await state(counters, check) == BudgetState(reserved=usd("6", 60))
    finally:
        await counters.close()
        await drop_namespace(namespace)
