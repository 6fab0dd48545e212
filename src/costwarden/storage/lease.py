"""Which replica leads the governor's evaluation: always this one in-process, a Redis lease when shared."""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING

from costwarden.storage.redis_client import redis_client

if TYPE_CHECKING:
    import redis.asyncio as aioredis


class LocalLease:
    """A single replica always leads."""

    ttl_s = 0.0  # nobody else takes over

    async def lead(self, now: float) -> bool:
        return True

    async def close(self) -> None:
        return None


class RedisLease:
    """`SET key holder NX PX ttl`, renewed by the holder each evaluation; another replica takes
    over when the holder stops renewing, or at once when it shuts down and hands the lease back.
    An unreachable Redis means nobody leads (no alerts twice)."""

    _RENEW = """
    if redis.call('GET', KEYS[1]) == ARGV[1] then
        redis.call('PEXPIRE', KEYS[1], ARGV[2]); return 1
    end
    if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
    return 0
    """

    def __init__(self, url: str, key: str = "costwarden:governor-lease", ttl_s: float = 15.0) -> None:
        self._client: aioredis.Redis
        self._client, self._unreachable = redis_client(url, 0.5)
        self._key = key
        self._ttl_ms = int(ttl_s * 1000)
        self.holder = f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    async def lead(self, now: float) -> bool:
        try:
            held = await self._client.eval(self._RENEW, 1, self._key, self.holder, self._ttl_ms)
        except self._unreachable:
            return False
        return bool(held)

    _RELEASE = """
    if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
    return 0
    """

    @property
    def ttl_s(self) -> float:
        """How long the lease outlives its holder's last renewal."""
        return self._ttl_ms / 1000

    async def close(self) -> None:
        """Hand the lease back if this process holds it (a shutdown, e.g. a rolling deploy), so the
        next replica leads at its next tick rather than a TTL later."""
        try:
            await self._client.eval(self._RELEASE, 1, self._key, self.holder)
        except Exception:  # Redis unreachable, or gone: the lease expires by itself
            pass
        finally:
            await self._client.aclose()
