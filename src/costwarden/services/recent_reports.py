"""Window reports kept for a short while (the dashboard's latency and top-driver panels): a month's
p50/p95 or the ranking of 10,000 keys changes little within a minute, and reading them again costs
seconds on a large ledger. A report is reused for `ttl_s` after it was read, whatever its window's
end has moved to since; the cache is bounded (`max_entries`, oldest dropped first)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

from costwarden.domain.report import SpendQuery, SpendReport, SpendRow
from costwarden.ports import LedgerStore


class RecentReports:
    def __init__(self, store: LedgerStore, ttl_s: float = 60.0, max_entries: int = 256) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._max = max_entries
        self._cache: OrderedDict[tuple[SpendQuery, int], tuple[float, SpendReport | list[SpendRow]]] = OrderedDict()

    async def spend(self, query: SpendQuery, now: float) -> SpendReport:
        """The report of `query`, or of the same query with an earlier end read less than `ttl_s` ago."""
        hit = self._hit((replace(query, end=None), 0), now)
        if isinstance(hit, SpendReport):
            return hit
        report = await self._store.spend(query)
        self._keep((replace(query, end=None), 0), now, report)
        return report

    async def top(self, query: SpendQuery, n: int, now: float) -> tuple[list[SpendRow], float]:
        """The `n` costliest groups of `query` (ranked by the store), reused as `spend` is; and
        when they were read."""
        key = (replace(query, end=None), n)
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self._ttl_s and isinstance(hit[1], list):
            return hit[1], hit[0]
        rows = await self._store.top(query, n)
        self._keep(key, now, rows)
        return rows, now

    def _hit(self, key: tuple[SpendQuery, int], now: float) -> SpendReport | list[SpendRow] | None:
        hit = self._cache.get(key)
        return hit[1] if hit is not None and now - hit[0] < self._ttl_s else None

    def _keep(self, key: tuple[SpendQuery, int], now: float, value: SpendReport | list[SpendRow]) -> None:
        self._cache[key] = (now, value)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
