"""The semantic index shared through Redis (semantic/shared.py): what one replica's matcher indexes,
another's finds by a paraphrase; its own entries are not read twice; expired ones are not taken; a
Redis that is down leaves each replica with its own index, counted, never failing a lookup.

Hand-made vectors stand in for the embedding model (its quality is bench/semantic_quality.py's)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence

import numpy as np
import pytest
import redis.asyncio as aioredis

from costwarden.semantic.embedder import Vectors
from costwarden.semantic.index import SemanticIndex
from costwarden.semantic.matcher import SemanticMatcher
from costwarden.semantic.shared import RedisIndexFeed, SharedIndexUnavailable
from tests.contract.test_counters import REDIS, need_redis

VECTORS = {
    "What is the capital city of France?": (1.0, 0.0, 0.0),
    "Which city is the capital of France?": (1.0, 0.05, 0.0),
    "What is the capital city of Spain?": (1.0, 0.06, 0.0),  # as close, but another name: the guard
    "How do I bake bread?": (0.0, 1.0, 0.0),
}


class Embedder:
    def __init__(self) -> None:
        self.closed = False

    async def embed(self, texts: Sequence[str]) -> Vectors:
        rows = [np.asarray(VECTORS[t], dtype=np.float32) for t in texts]
        return np.vstack([r / np.linalg.norm(r) for r in rows])

    def close(self) -> None:
        self.closed = True


def matcher(url: str, stream: str) -> SemanticMatcher:
    return SemanticMatcher(Embedder(), SemanticIndex(0.95, 100), RedisIndexFeed(url, 100, 1.0, stream=stream))


@pytest.fixture
async def stream() -> AsyncIterator[str]:
    need_redis()
    name = f"cwtest:{uuid.uuid4().hex[:12]}:semantic-index"
    yield name
    client = aioredis.Redis.from_url(REDIS)
    await client.delete(name)
    await client.aclose()


async def test_a_prompt_indexed_on_one_replica_is_found_on_another(stream: str) -> None:
    first, second = matcher(REDIS, stream), matcher(REDIS, stream)
    try:
        key, embedding = await first.match("team/search|chat", "What is the capital city of France?")
        assert key is None
        await first.remember("team/search|chat", "What is the capital city of France?", embedding, "k-france", 60)
        found, _ = await second.match("team/search|chat", "Which city is the capital of France?")
        assert found == "k-france"
        # Another scope (another team) or a near miss the guard refuses: not found.
        assert (await second.match("team/ads|chat", "Which city is the capital of France?"))[0] is None
        assert (await second.match("team/search|chat", "What is the capital city of Spain?"))[0] is None
        # Each replica reads only the others' entries: the first one's index holds its own once.
        await first.match("team/search|chat", "How do I bake bread?")
        assert len(first._index) == 1 and len(second._index) == 1
        # A replica started later reads what is still in the stream, before it serves.
        third = matcher(REDIS, stream)
        await third.catch_up()
        assert len(third._index) == 1
        assert (await third.match("team/search|chat", "Which city is the capital of France?"))[0] == "k-france"
        await third.close()
    finally:
        await first.close()
        await second.close()


async def test_an_entry_that_expired_is_not_taken(stream: str) -> None:
    first, second = matcher(REDIS, stream), matcher(REDIS, stream)
    try:
        await first.remember("s", "What is the capital city of France?", None, "k-old", -1)  # already expired
        assert (await second.match("s", "Which city is the capital of France?"))[0] is None
    finally:
        await first.close()
        await second.close()


async def test_a_redis_that_is_down_leaves_the_local_index() -> None:
    down = matcher("redis://127.0.0.1:1", "unused")
    try:
        key, embedding = await down.match("s", "What is the capital city of France?")
        await down.remember("s", "What is the capital city of France?", embedding, "k-france", 60)
        assert key is None and down.feed_errors >= 1
        assert (await down.match("s", "Which city is the capital of France?"))[0] == "k-france"  # its own
    finally:
        await down.close()
    feed = RedisIndexFeed("redis://127.0.0.1:1", 10, retry_after=60)
    with pytest.raises(SharedIndexUnavailable):
        await feed.pull()
    with pytest.raises(SharedIndexUnavailable, match="skipped"):  # not retried before retry_after
        await feed.pull()
    await feed.close()
