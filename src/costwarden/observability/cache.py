"""Prometheus view of the response cache: lookups by result (hit ratio = hit / (hit + miss)),
backend failures, answers stored. Read from the cache forward step when scraped."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from costwarden.upstream.cache import CacheForward


class CacheCollector(Collector):
    def __init__(self, forward: CacheForward, shared_index_errors: Callable[[], int] | None = None) -> None:
        """`shared_index_errors`: the failed reads and writes of the semantic index shared through
        Redis, when one is configured (the local index answered meanwhile)."""
        self._forward = forward
        self._shared_index_errors = shared_index_errors

    def collect(self) -> Iterable[CounterMetricFamily]:
        lookups = CounterMetricFamily(
            "costwarden_cache_lookups",
            "Cacheable requests by result: hit (answered from the cache), miss (forwarded), "
            "bypass (the client's Cache-Control skipped the lookup).",
            labels=["deployment", "result"],
        )
        for (deployment, result), count in sorted(self._forward.lookups.items()):
            lookups.add_metric([deployment, result], count)
        yield lookups
        errors = CounterMetricFamily(
            "costwarden_cache_errors",
            "Response cache backend failures (the request was served uncached), by operation.",
            labels=["deployment", "op"],
        )
        for (deployment, op), count in sorted(self._forward.errors.items()):
            errors.add_metric([deployment, op], count)
        yield errors
        stores = CounterMetricFamily(
            "costwarden_cache_stores", "Complete upstream answers stored in the response cache.", labels=["deployment"]
        )
        for deployment, count in sorted(self._forward.stores.items()):
            stores.add_metric([deployment], count)
        yield stores
        if self._shared_index_errors is not None:
            shared = CounterMetricFamily(
                "costwarden_cache_shared_index_errors",
                "Reads and writes of the semantic index shared through Redis that failed (each replica's "
                "own index answered meanwhile).",
            )
            shared.add_metric([], self._shared_index_errors())
            yield shared
