"""The degrade state of `degrade` budgets in Redis, so every replica switches variants together.

One hash, `costwarden:variant-state`: field = budget id, value = the state as JSON. Raises
`VariantStateUnavailable` when Redis cannot be reached (the caller keeps its last known state).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from costwarden.domain.variant import DegradeState
from costwarden.storage.redis_client import redis_client

if TYPE_CHECKING:
    import redis.asyncio as aioredis


class VariantStateUnavailable(Exception):
    """The shared state store could not be read or written."""


def encode(state: DegradeState) -> bytes:
    return orjson.dumps([state.level, state.changed_at, state.low_since])


def decode(raw: bytes) -> DegradeState:
    """A state; one written before degrade levels (`[true, ...]`, one variant) reads as level 1."""
    level, changed_at, low_since = orjson.loads(raw)
    return DegradeState(int(level), float(changed_at), None if low_since is None else float(low_since))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisVariantState:
    """A VariantStateStore in one Redis hash."""

    def __init__(self, url: str, key: str = "costwarden:variant-state") -> None:
        self._client: aioredis.Redis
        self._client, self._errors = redis_client(url, 0.5)
        self._key = key

    async def load(self) -> dict[str, DegradeState]:
        try:
            raw = await self._client.hgetall(self._key)
        except self._errors as exc:
            raise VariantStateUnavailable(str(exc)) from exc
        return {_text(field): decode(_text(value).encode()) for field, value in raw.items()}

    async def save(self, budget_id: str, state: DegradeState) -> None:
        try:
            await self._client.hset(self._key, budget_id, encode(state))
        except self._errors as exc:
            raise VariantStateUnavailable(str(exc)) from exc

    async def close(self) -> None:
        await self._client.aclose()
