"""The response cache in this process: an LRU bounded by entries and bytes, entries with a TTL.

One replica only (each process has its own). The clock is passed in, so tests need no sleeping.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from costwarden.domain.response_cache import CachedAnswer


class MemoryResponseCache:
    """A ResponseCache in an OrderedDict (least recently used first)."""

    def __init__(self, max_entries: int, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[str, tuple[CachedAnswer, float]] = OrderedDict()  # key -> (answer, expires)
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._clock = clock
        self.evictions = 0

    async def get(self, key: str) -> CachedAnswer | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        answer, expires = entry
        if self._clock() >= expires:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return answer

    async def put(self, key: str, answer: CachedAnswer, ttl_seconds: float) -> None:
        if answer.size > self._max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (answer, self._clock() + ttl_seconds)
        self._bytes += answer.size
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            self._drop(next(iter(self._entries)))
            self.evictions += 1

    async def purge(self, namespace: str | None) -> int:
        if namespace is None:
            dropped = len(self._entries)
            self._entries.clear()
            self._bytes = 0
            return dropped
        prefix = namespace + ":"
        doomed = [k for k in self._entries if k.startswith(prefix)]
        for key in doomed:
            self._drop(key)
        return len(doomed)

    async def size(self) -> tuple[int, int | None]:
        return len(self._entries), self._bytes

    async def close(self) -> None:
        return None

    def _drop(self, key: str) -> None:
        answer, _ = self._entries.pop(key)
        self._bytes -= answer.size
