"""The response cache in Redis, shared by every replica: one key per answer,
`costwarden:cache:<namespace>:<sha256>`, expiring by itself (SET PX). Redis bounds its memory.

A Redis that fails is skipped for `retry_after` seconds (a request is not made to wait on a
backend that just failed); both the failure and the skip raise `ResponseCacheUnavailable`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from costwarden.domain.response_cache import CachedAnswer
from costwarden.ports import ResponseCacheUnavailable
from costwarden.storage.redis_client import Backoff, redis_client

if TYPE_CHECKING:
    import redis.asyncio as aioredis

PREFIX = "costwarden:cache:"
_SCAN_COUNT = 1000


class RedisResponseCache:
    """A ResponseCache in Redis."""

    def __init__(self, url: str, retry_after: float = 1.0, timeout: float = 0.25, prefix: str = PREFIX) -> None:
        self._client: aioredis.Redis
        self._client, self._errors = redis_client(url, timeout)
        self._backoff = Backoff(retry_after, ResponseCacheUnavailable, "the cache's Redis failed just before: skipped")
        self._prefix = prefix

    async def get(self, key: str) -> CachedAnswer | None:
        self._backoff.check()
        try:
            raw = await self._client.get(self._prefix + key)
        except self._errors as exc:
            raise self._backoff.failed(exc) from exc
        if raw is None:
            return None
        return CachedAnswer.decode(raw if isinstance(raw, bytes) else raw.encode())

    async def put(self, key: str, answer: CachedAnswer, ttl_seconds: float) -> None:
        self._backoff.check()
        try:
            await self._client.set(self._prefix + key, answer.encode(), px=max(1, int(ttl_seconds * 1000)))
        except self._errors as exc:
            raise self._backoff.failed(exc) from exc

    async def purge(self, namespace: str | None) -> int:
        pattern = self._prefix + ("*" if namespace is None else namespace + ":*")
        dropped = 0
        try:
            batch: list[bytes] = []
            async for key in self._client.scan_iter(match=pattern, count=_SCAN_COUNT):
                batch.append(key)
                if len(batch) >= _SCAN_COUNT:
                    dropped += await self._client.unlink(*batch)
                    batch = []
            if batch:
                dropped += await self._client.unlink(*batch)
        except self._errors as exc:
            raise ResponseCacheUnavailable(str(exc)) from exc
        return dropped

    async def size(self) -> tuple[int, int | None]:
        try:
            entries = 0
            async for _ in self._client.scan_iter(match=self._prefix + "*", count=_SCAN_COUNT):
                entries += 1
        except self._errors as exc:
            raise ResponseCacheUnavailable(str(exc)) from exc
        return entries, None

    async def close(self) -> None:
        await self._client.aclose()
