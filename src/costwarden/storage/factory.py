"""The one place that picks a storage adapter from the config's ledger URL."""

from __future__ import annotations

from costwarden.config.governance import BreakerConfig
from costwarden.ports import CounterStore, Store
from costwarden.storage.breaker import CounterBreaker
from costwarden.storage.lease import LocalLease, RedisLease
from costwarden.storage.memory_counters import MemoryCounters
from costwarden.storage.postgres import PostgresStore
from costwarden.storage.redis_counters import RedisCounters
from costwarden.storage.sqlite import SQLiteStore


def open_store(url: str) -> Store:
    """An unopened store for `sqlite:///path` or `postgresql://...` (call `await store.open()`)."""
    if url.startswith("sqlite:///"):
        return SQLiteStore.from_url(url)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore.from_url(url)
    raise ValueError(f"unsupported ledger URL {url!r}: use sqlite:///path or postgresql://...")


def open_counters(state_url: str | None, breaker: BreakerConfig | None = None) -> CounterStore:
    """Shared admission state: Redis for several replicas (behind a circuit breaker unless
    `breaker.enabled` is false), or in-process for one (which cannot fail)."""
    if state_url is None:
        return MemoryCounters()
    redis = RedisCounters(state_url)
    breaker = breaker or BreakerConfig()
    if not breaker.enabled:
        return redis
    return CounterBreaker(redis, breaker.failures, breaker.outage_seconds, breaker.open_seconds)


def open_lease(state_url: str | None, ttl_s: float) -> LocalLease | RedisLease:
    return LocalLease() if state_url is None else RedisLease(state_url, ttl_s=ttl_s)
