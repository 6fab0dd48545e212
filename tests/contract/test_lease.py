"""The governor's lease in the shared Redis: one holder at a time, taken over when the holder stops
renewing, and handed back at once when the holder shuts down (a rolling deploy then does not leave
alerts unevaluated for a lease TTL)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from costwarden.storage.lease import RedisLease
from tests.contract.test_counters import REDIS, drop_namespace, need_redis


@pytest.fixture
async def key() -> AsyncIterator[str]:
    need_redis()
    namespace = f"lease-{uuid.uuid4().hex[:8]}:"
    yield namespace + "governor-lease"
    await drop_namespace(namespace)


async def test_one_holder_then_the_next_when_it_stops_renewing(key: str) -> None:
    first, second = RedisLease(REDIS, key, ttl_s=0.3), RedisLease(REDIS, key, ttl_s=0.3)
    try:
        assert await first.lead(0) and not await second.lead(0)
        assert await first.lead(0)  # renewed by its holder
        await asyncio.sleep(0.4)  # the holder died: nobody renews
        assert await second.lead(0) and not await first.lead(0)
    finally:
        await first.close()
        await second.close()


async def test_a_holder_that_shuts_down_hands_the_lease_back(key: str) -> None:
    first, second = RedisLease(REDIS, key, ttl_s=15), RedisLease(REDIS, key, ttl_s=15)
    try:
        assert await first.lead(0)
        await first.close()
        assert await second.lead(0)  # at once, not 15 s later
    finally:
        await second.close()


async def test_closing_a_replica_that_does_not_lead_leaves_the_lease_alone(key: str) -> None:
    first, second = RedisLease(REDIS, key, ttl_s=15), RedisLease(REDIS, key, ttl_s=15)
    third = RedisLease(REDIS, key, ttl_s=15)
    try:
        assert await first.lead(0) and not await second.lead(0)
        await second.close()
        assert not await third.lead(0) and await first.lead(0)
    finally:
        await first.close()
        await third.close()
