"""The in-process response cache: least recently used first out, bounded by entries and bytes."""

from __future__ import annotations

from costwarden.domain.response_cache import CachedAnswer
from costwarden.domain.usage import Usage
from costwarden.storage.cache_memory import MemoryResponseCache
from tests.unit.clock import Clock


def answer(size: int) -> CachedAnswer:
    return CachedAnswer(b"x" * size, Usage(1, 1), 0.0)


async def test_the_least_recently_used_goes_first_when_entries_are_full() -> None:
    cache = MemoryResponseCache(max_entries=2, max_bytes=1000)
    await cache.put("a", answer(10), 60)
    await cache.put("b", answer(10), 60)
    assert await cache.get("a") is not None  # a is now the most recently used
    await cache.put("c", answer(10), 60)
    assert await cache.get("b") is None
    assert await cache.get("a") is not None and await cache.get("c") is not None
    assert (await cache.size(), cache.evictions) == ((2, 20), 1)


async def test_bytes_are_bounded_and_an_answer_over_the_bound_is_not_kept() -> None:
    cache = MemoryResponseCache(max_entries=100, max_bytes=100)
    for key in "abcd":
        await cache.put(key, answer(30), 60)
    assert await cache.size() == (3, 90)
    assert await cache.get("a") is None
    await cache.put("huge", answer(101), 60)
    assert await cache.get("huge") is None and await cache.size() == (3, 90)
    await cache.put("b", answer(5), 60)  # replacing an entry gives its bytes back
    assert await cache.size() == (3, 65)


async def test_an_entry_expires_at_its_ttl_by_the_clock() -> None:
    clock = Clock()
    cache = MemoryResponseCache(10, 1000, clock)
    await cache.put("a", answer(10), 5)
    clock.now += 4.99
    assert await cache.get("a") is not None
    clock.now += 0.01
    assert await cache.get("a") is None
    assert await cache.size() == (0, 0)
