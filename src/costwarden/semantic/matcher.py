"""The semantic cache's lookup: a prompt embedded off the event loop, then searched in the index.

Built by the runtime only when a deployment sets `cache.semantic: true` (the model loads once,
about a second on a CPU); each semantic lookup costs one embedding (milliseconds on a CPU).
"""

from __future__ import annotations

from costwarden.config.cache import CacheConfig
from costwarden.semantic.embedder import MiniLMEmbedder, Vectors
from costwarden.semantic.index import SemanticIndex


class SemanticMatcher:
    """Implements `upstream.cache.Similar` with MiniLM embeddings and the in-process index."""

    def __init__(self, embedder: MiniLMEmbedder, index: SemanticIndex) -> None:
        self._embedder = embedder
        self._index = index

    @classmethod
    def from_config(cls, config: CacheConfig) -> SemanticMatcher:
        return cls(MiniLMEmbedder(), SemanticIndex(config.semantic_threshold, config.semantic_max_entries))

    async def match(self, scope: str, prompt: str) -> tuple[str | None, object]:
        vectors: Vectors = await self._embedder.embed([prompt])
        found = self._index.search(scope, vectors[0], prompt)
        return (None if found is None else found[0]), vectors[0]

    async def remember(self, scope: str, prompt: str, embedding: object | None, key: str, ttl_seconds: float) -> None:
        vector = (await self._embedder.embed([prompt]))[0] if embedding is None else embedding
        self._index.add(scope, vector, prompt, key, ttl_seconds)  # type: ignore[arg-type]

    def close(self) -> None:
        self._embedder.close()
