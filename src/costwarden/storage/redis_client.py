"""What every Redis-backed part opens its client with, and the short back-off of the parts a request
reads on its way (the response cache, the shared semantic index): a Redis that just failed is
skipped for `retry_after` seconds, so that a request is not made to wait on it again."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    import redis.asyncio as aioredis

E = TypeVar("E", bound=Exception)


def redis_client(url: str, timeout: float) -> tuple[aioredis.Redis, tuple[type[Exception], ...]]:
    """A client whose calls give up after `timeout` seconds, and the errors that mean Redis did not
    answer. The redis extra is imported here, so that a single-replica install runs without it."""
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    return Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout), (RedisError, OSError)


class Backoff(Generic[E]):
    """`check` before a call raises `unavailable(skipped)` while the backend is skipped; `failed`,
    given a call's error, starts the skip and returns the error to raise."""

    def __init__(
        self,
        retry_after: float,
        unavailable: Callable[[str], E],
        skipped: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._retry_after = retry_after
        self._unavailable = unavailable
        self._skipped = skipped
        self._clock = clock
        self._down_until = 0.0

    def check(self) -> None:
        if self._clock() < self._down_until:
            raise self._unavailable(self._skipped)

    def failed(self, exc: Exception) -> E:
        self._down_until = self._clock() + self._retry_after
        return self._unavailable(str(exc))
