"""The VariantStateStore port against every adapter (in-process, Redis), and the ledger's degrade
columns (variant served, the original's cost) against every ledger (SQLite, PostgreSQL)."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal

import pytest
import redis.asyncio as aioredis

from costwarden.domain.variant import DegradeState
from costwarden.ports import Store, VariantStateStore
from costwarden.storage.variant_state_memory import MemoryVariantState
from costwarden.storage.variant_state_redis import RedisVariantState, VariantStateUnavailable
from tests.contract.test_counters import REDIS, need_redis
from tests.contract.test_store import make_record


@pytest.fixture(params=["memory", "redis"])
async def states(request: pytest.FixtureRequest) -> AsyncIterator[VariantStateStore]:
    if request.param == "memory":
        yield MemoryVariantState()
        return
    need_redis()
    key = f"cwtest:{uuid.uuid4().hex[:12]}:variant-state"
    store = RedisVariantState(REDIS, key=key)
    try:
        yield store
    finally:
        await store.close()
        client = aioredis.Redis.from_url(REDIS)
        await client.delete(key)
        await client.aclose()


async def test_states_round_trip_and_replace_whole(states: VariantStateStore) -> None:
    assert await states.load() == {}
    degraded = DegradeState(1, 1_800_000_000.25, None)
    holding = DegradeState(2, 1_800_000_000.25, 1_800_000_100.5)  # at the second variant
    await states.save("team-a", degraded)
    await states.save("b.2", DegradeState())
    assert await states.load() == {"team-a": degraded, "b.2": DegradeState()}
    await states.save("team-a", holding)
    assert (await states.load())["team-a"] == holding


async def test_two_redis_clients_see_one_state() -> None:
    need_redis()
    key = f"cwtest:{uuid.uuid4().hex[:12]}:variant-state"
    first, second = RedisVariantState(REDIS, key=key), RedisVariantState(REDIS, key=key)
    try:
        await first.save("b", DegradeState(3, 5.0))
        assert await second.load() == {"b": DegradeState(3, 5.0)}
    finally:
        await first.close()
        await second.close()


async def test_a_state_saved_before_levels_reads_as_the_first_level() -> None:
    need_redis()
    key = f"cwtest:{uuid.uuid4().hex[:12]}:variant-state"
    client = aioredis.Redis.from_url(REDIS)
    store = RedisVariantState(REDIS, key=key)
    try:
        await client.hset(key, mapping={"old": b"[true,5.0,null]", "off": b"[false,6.0,null]"})
        assert await store.load() == {"old": DegradeState(1, 5.0), "off": DegradeState(0, 6.0)}
    finally:
        await store.close()
        await client.delete(key)
        await client.aclose()


async def test_an_unreachable_redis_raises_the_typed_error() -> None:
    store = RedisVariantState("redis://127.0.0.1:1")
    with pytest.raises(VariantStateUnavailable):
        await store.load()
    with pytest.raises(VariantStateUnavailable):
        await store.save("b", DegradeState())
    await store.close()


async def test_the_ledger_keeps_the_variant_and_the_original_cost_exactly(store: Store) -> None:
    rng = random.Random(3)
    plain = make_record(1, rng)
    degraded = replace(
        make_record(2, rng), variant="small", cost_usd=Decimal("0.000000001"), original_cost_usd=Decimal("12.345678901")
    )
    fallback = replace(make_record(3, rng), variant=None, original_cost_usd=Decimal("0.25"))
    await store.write([plain, degraded, fallback])
    stored = {r.request_id: r for r in await store.records(None, None, 10)}
    assert (stored[plain.request_id].variant, stored[plain.request_id].original_cost_usd) == (None, None)
    assert stored[degraded.request_id] == degraded
    assert stored[fallback.request_id] == fallback
