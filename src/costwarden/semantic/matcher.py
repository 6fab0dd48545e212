"""The semantic cache's lookup: a prompt embedded off the event loop, then searched in the index.

Built by the runtime only when a deployment sets `cache.semantic: true` (the model loads once,
about a second on a CPU); each semantic lookup costs one embedding (milliseconds on a CPU). With a
Redis cache the index is shared (semantic/shared.py): what other replicas indexed is read in while
the prompt is being embedded, and what this one indexes is appended for them; what the stream held when the gateway
started is read before it serves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Protocol

from costwarden.config.cache import CacheConfig
from costwarden.semantic.embedder import MiniLMEmbedder, Vectors
from costwarden.semantic.index import SemanticIndex, Vector
from costwarden.semantic.shared import RedisIndexFeed, SharedIndexUnavailable

log = logging.getLogger(__name__)
_WARN_EVERY_S = 60.0


class Embedder(Protocol):
    async def embed(self, texts: Sequence[str]) -> Vectors: ...

    def close(self) -> None: ...


class SemanticMatcher:
    """Implements `upstream.cache.Similar` with MiniLM embeddings and the in-process index."""

    def __init__(self, embedder: Embedder, index: SemanticIndex, feed: RedisIndexFeed | None = None) -> None:
        self._embedder = embedder
        self._index = index
        self._feed = feed  # the index shared through Redis; None: this process's own
        self.feed_errors = 0  # reads and writes of the shared index that failed (the local index served)
        self._warned = -_WARN_EVERY_S

    @classmethod
    def from_config(cls, config: CacheConfig, redis_url: str | None = None) -> SemanticMatcher:
        """`redis_url`: the cache's Redis (`cache.backend: redis`), which then shares the index too."""
        feed = None
        if redis_url is not None:
            feed = RedisIndexFeed(redis_url, config.semantic_max_entries, config.retry_after_seconds)
        return cls(MiniLMEmbedder(), SemanticIndex(config.semantic_threshold, config.semantic_max_entries), feed)

    async def catch_up(self) -> None:
        """Index what the shared stream holds now (at the gateway's start, before it serves: the
        first read of up to `semantic_max_entries` entries takes a few tenths of a second)."""
        await self._pull()

    async def match(self, scope: str, prompt: str) -> tuple[str | None, object]:
        vectors, _ = await asyncio.gather(self._embedder.embed([prompt]), self._pull())
        found = self._index.search(scope, vectors[0], prompt)
        return (None if found is None else found[0]), vectors[0]

    async def remember(self, scope: str, prompt: str, embedding: object | None, key: str, ttl_seconds: float) -> None:
        vector: Vector = (await self._embedder.embed([prompt]))[0] if embedding is None else embedding  # type: ignore[assignment]
        self._index.add(scope, vector, prompt, key, ttl_seconds)
        if self._feed is not None:
            try:
                await self._feed.publish(scope, key, prompt, ttl_seconds, vector)
            except SharedIndexUnavailable as exc:
                self._feed_failed(exc)

    async def _pull(self) -> None:
        """Index what the other replicas indexed since the last lookup."""
        if self._feed is None:
            return
        try:
            entries = await self._feed.pull()
        except SharedIndexUnavailable as exc:
            self._feed_failed(exc)
            return
        now = time.time()
        for e in entries:
            if e.expires_at > now:
                self._index.add(e.scope, e.vector, e.prompt, e.key, e.expires_at - now)

    def _feed_failed(self, exc: Exception) -> None:
        self.feed_errors += 1
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY_S:
            self._warned = now
            log.warning("the shared semantic index failed: this replica searches only its own entries: %s", exc)

    async def close(self) -> None:
        self._embedder.close()
        if self._feed is not None:
            await self._feed.close()
