"""The ResponseCache port against every adapter (in-process LRU, Redis), and the ledger's cache
columns (`cache`, `cache_avoided_usd`) against every ledger (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal

import pytest

from costwarden.domain.response_cache import CachedAnswer
from costwarden.domain.usage import Usage
from costwarden.ports import ResponseCache, ResponseCacheUnavailable, Store
from costwarden.storage.cache_memory import MemoryResponseCache
from costwarden.storage.cache_redis import RedisResponseCache
from tests.contract.test_counters import REDIS, need_redis
from tests.contract.test_store import make_record

ANSWER = CachedAnswer(b'{"object":"chat.completion","choices":[]}', Usage(7, 3, 1, 0, 0.25), 1_800_000_000.5)


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[ResponseCache]:
    if request.param == "memory":
        yield MemoryResponseCache(1000, 1 << 20)
        return
    need_redis()
    adapter = RedisResponseCache(REDIS, prefix=f"cwtest:{uuid.uuid4().hex[:12]}:cache:")
    try:
        yield adapter
    finally:
        await adapter.purge(None)
        await adapter.close()


async def test_answers_round_trip_and_replace(cache: ResponseCache) -> None:
    assert await cache.get("team/search:k1") is None
    await cache.put("team/search:k1", ANSWER, 60)
    assert await cache.get("team/search:k1") == ANSWER
    newer = replace(ANSWER, body=b'{"object":"chat.completion","choices":[1]}')
    await cache.put("team/search:k1", newer, 60)
    assert await cache.get("team/search:k1") == newer
    assert (await cache.size())[0] == 1


async def test_an_answer_expires_after_its_ttl(cache: ResponseCache) -> None:
    await cache.put("global:k", ANSWER, 0.05)
    assert await cache.get("global:k") == ANSWER
    await asyncio.sleep(0.15)
    assert await cache.get("global:k") is None


async def test_purge_drops_one_namespace_or_all(cache: ResponseCache) -> None:
    for key in ("team/search:a", "team/search:b", "team/ads:a", "team/search%3Ax:a", "global:a"):
        await cache.put(key, ANSWER, 60)
    assert await cache.purge("team/search") == 2
    assert await cache.get("team/search:a") is None and await cache.get("team/ads:a") == ANSWER
    assert await cache.get("team/search%3Ax:a") == ANSWER  # another team whose name starts alike
    assert await cache.purge(None) == 3
    assert (await cache.size())[0] == 0


async def test_a_redis_that_is_down_raises_unavailable_and_is_skipped_a_while() -> None:
    adapter = RedisResponseCache("redis://127.0.0.1:9/0", retry_after=60)  # nothing listens on 9
    try:
        with pytest.raises(ResponseCacheUnavailable):
            await adapter.get("global:k")
        with pytest.raises(ResponseCacheUnavailable, match="skipped"):
            await adapter.put("global:k", ANSWER, 60)
    finally:
        await adapter.close()


async def test_the_ledger_keeps_the_cache_columns_exactly(store: Store) -> None:
    rng = random.Random(16)
    hit = replace(make_record(1, rng), cache="exact", cost_usd=Decimal(0), cache_avoided_usd=Decimal("12.345678901"))
    plain = make_record(2, rng)
    await store.write([hit, plain])
    stored = {r.request_id: r for r in await store.records(None, None, 10)}
    assert (stored[hit.request_id].cache, stored[hit.request_id].cache_avoided_usd) == (
        "exact", Decimal("12.345678901")
    )  # fmt: skip
    assert (stored[plain.request_id].cache, stored[plain.request_id].cache_avoided_usd) == (None, None)
