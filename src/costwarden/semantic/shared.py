"""The semantic index shared by every replica through Redis (with `cache.backend: redis`).

Each replica keeps its own in-process index (semantic/index.py) and searches it there; what it
indexes it also appends to one Redis stream, `costwarden:semantic-index` (scope, answer key,
prompt, expiry as wall-clock time, the vector's 384 float32), trimmed to about
`cache.semantic_max_entries`. Before each search a replica reads what the others appended since
its last read (one XREAD, not blocking; its own entries it skips), so a prompt answered on one
replica is found by a paraphrase on another. A replica that starts reads the stream from its
beginning (what is still in it) before it serves.

Redis being down never fails a lookup: the error is raised as `SharedIndexUnavailable` for the
matcher to count, and the feed is skipped for `retry_after` seconds; the local index still serves.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np

from costwarden.semantic.index import Vector
from costwarden.storage.redis_client import Backoff, redis_client

if TYPE_CHECKING:
    import redis.asyncio as aioredis

STREAM = "costwarden:semantic-index"
_PAGE = 1000


class SharedIndexUnavailable(Exception):
    """The Redis stream of the shared index could not be read or written."""


@dataclass(frozen=True, slots=True)
class SharedEntry:
    """One indexed prompt as another replica appended it."""

    scope: str
    key: str  # the exact cache's key of its answer
    prompt: str
    expires_at: float  # wall-clock (time.time) seconds
    vector: Vector


class RedisIndexFeed:
    """Appends this replica's index entries to a Redis stream and reads the others'."""

    def __init__(
        self, url: str, max_entries: int, retry_after: float = 1.0, timeout: float = 0.25, stream: str = STREAM
    ) -> None:
        self._client: aioredis.Redis
        self._client, self._errors = redis_client(url, timeout)
        skipped = "the shared index's Redis failed just before: skipped"
        self._backoff = Backoff(retry_after, SharedIndexUnavailable, skipped)
        self._stream = stream
        self._max_entries = max_entries
        self._origin = os.urandom(8).hex().encode()  # this replica: its own entries are not read back
        self._last: bytes | str = "0-0"

    async def publish(self, scope: str, key: str, prompt: str, ttl_seconds: float, vector: Vector) -> None:
        self._backoff.check()
        fields: dict[bytes, bytes] = {
            b"o": self._origin,
            b"s": scope.encode(),
            b"k": key.encode(),
            b"p": prompt.encode(),
            b"e": repr(time.time() + ttl_seconds).encode(),
            b"v": np.asarray(vector, dtype=np.float32).tobytes(),
        }
        try:
            await self._client.xadd(self._stream, fields, maxlen=self._max_entries, approximate=True)  # type: ignore[arg-type]
        except self._errors as exc:
            raise self._backoff.failed(exc) from exc

    async def pull(self) -> list[SharedEntry]:
        """The entries other replicas appended since the last pull (the whole stream at the first)."""
        self._backoff.check()
        found: list[SharedEntry] = []
        try:
            while True:
                read = await self._client.xread({self._stream: self._last}, count=_PAGE)
                answer = cast(list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]], read)
                if not answer:
                    return found
                [(_, messages)] = answer
                for message_id, fields in messages:
                    self._last = message_id
                    if fields.get(b"o") != self._origin:
                        found.append(_entry(fields))
                if len(messages) < _PAGE:
                    return found
        except self._errors as exc:
            raise self._backoff.failed(exc) from exc

    async def close(self) -> None:
        await self._client.aclose()


def _entry(fields: dict[bytes, bytes]) -> SharedEntry:
    return SharedEntry(
        fields[b"s"].decode(),
        fields[b"k"].decode(),
        fields[b"p"].decode(),
        float(fields[b"e"]),
        np.frombuffer(fields[b"v"], dtype=np.float32),
    )
