"""The one place that picks a storage adapter from the config's ledger URL."""

from __future__ import annotations

from costwarden.config.cache import CacheConfig
from costwarden.config.governance import BreakerConfig
from costwarden.ports import BatchBackend, CounterStore, ResponseCache, SampleStore, Store, VariantStateStore
from costwarden.storage.breaker import CounterBreaker
from costwarden.storage.cache_memory import MemoryResponseCache
from costwarden.storage.lease import LocalLease, RedisLease
from costwarden.storage.memory_counters import MemoryCounters
from costwarden.storage.queue_sqlite import SQLiteQueue
from costwarden.storage.samples_sqlite import SQLiteSamples
from costwarden.storage.sqlite import SQLiteStore
from costwarden.storage.sqlite_conn import sqlite_path
from costwarden.storage.variant_state_memory import MemoryVariantState


class MissingExtra(RuntimeError):
    """The config names a backend whose client library is an extra that is not installed."""

    def __init__(self, what: str, extra: str, module: str) -> None:
        super().__init__(f"{what} needs the {module!r} package: pip install 'costwarden[{extra}]'")


def _check_missing(exc: ModuleNotFoundError, what: str, extra: str, clients: tuple[str, ...]) -> None:
    """Turn a missing optional client into `MissingExtra`; any other import failure stays as it is."""
    missing = (exc.name or "").split(".")[0]
    if missing in clients:
        raise MissingExtra(what, extra, missing) from exc


def open_store(url: str, partition: str = "none") -> Store:
    """An unopened store for `sqlite:///path` or `postgresql://...` (call `await store.open()`);
    `partition="monthly"`: a new PostgreSQL ledger is partitioned by month (storage/partitions.py)."""
    if url.startswith("sqlite:///"):
        return SQLiteStore.from_url(url)
    if url.startswith(("postgresql://", "postgres://")):
        try:  # the postgres extra, imported only when a PostgreSQL ledger is configured
            from costwarden.storage.postgres import PostgresStore
        except ModuleNotFoundError as exc:
            _check_missing(exc, "a PostgreSQL ledger", "postgres", ("asyncpg",))
            raise
        return PostgresStore(url, partition=partition)
    raise ValueError(f"unsupported ledger URL {url!r}: use sqlite:///path or postgresql://...")


def open_counters(state_url: str | None, breaker: BreakerConfig | None = None) -> CounterStore:
    """Shared admission state: Redis for several replicas (behind a circuit breaker unless
    `breaker.enabled` is false), or in-process for one (which cannot fail)."""
    if state_url is None:
        return MemoryCounters()
    try:  # the redis extra, imported only when shared state is configured
        from costwarden.storage.redis_counters import RedisCounters
    except ModuleNotFoundError as exc:
        _check_missing(exc, "shared state in Redis", "redis", ("redis",))
        raise
    redis = RedisCounters(state_url)
    breaker = breaker or BreakerConfig()
    if not breaker.enabled:
        return redis
    return CounterBreaker(redis, breaker.failures, breaker.outage_seconds, breaker.open_seconds)


def open_lease(state_url: str | None, ttl_s: float) -> LocalLease | RedisLease:
    if state_url is None:
        return LocalLease()
    try:
        return RedisLease(state_url, ttl_s=ttl_s)
    except ModuleNotFoundError as exc:
        _check_missing(exc, "shared state in Redis", "redis", ("redis",))
        raise


def open_variant_state(state_url: str | None) -> VariantStateStore:
    """Where `degrade` budgets keep their state: Redis when shared, else this process."""
    if state_url is None:
        return MemoryVariantState()
    try:
        from costwarden.storage.variant_state_redis import RedisVariantState
    except ModuleNotFoundError as exc:
        _check_missing(exc, "shared state in Redis", "redis", ("redis",))
        raise
    return RedisVariantState(state_url)


def open_queue(url: str) -> BatchBackend:
    """An unopened batch queue for `sqlite:///path` or `postgresql://...` (the ledger's by default)."""
    if url.startswith("sqlite:///"):
        return SQLiteQueue.from_url(url)
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from costwarden.storage.queue_postgres import PostgresQueue
        except ModuleNotFoundError as exc:
            _check_missing(exc, "a PostgreSQL batch queue", "postgres", ("asyncpg",))
            raise
        return PostgresQueue.from_url(url)
    raise ValueError(f"unsupported queue URL {url!r}: use sqlite:///path or postgresql://...")


def open_response_cache(config: CacheConfig, state_url: str | None) -> ResponseCache:
    """The response cache's backend: this process's LRU, or Redis (`cache.url`, else `state`)."""
    if config.backend == "memory":
        return MemoryResponseCache(config.max_entries, config.max_bytes)
    url = config.url or state_url
    if url is None:
        raise ValueError("a redis cache needs `cache.url` or the top-level `state` URL")
    try:
        from costwarden.storage.cache_redis import RedisResponseCache
    except ModuleNotFoundError as exc:
        _check_missing(exc, "a cache in Redis", "redis", ("redis",))
        raise
    return RedisResponseCache(url, config.retry_after_seconds)


def open_samples(url: str) -> SampleStore:
    """Compute samples in the ledger's database (its migrations create the tables: open the ledger first)."""
    if url.startswith("sqlite:///"):
        return SQLiteSamples(sqlite_path(url))
    from costwarden.storage.samples_postgres import PostgresSamples

    return PostgresSamples(url)
