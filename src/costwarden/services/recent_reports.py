"""Window reports kept for a short while (the dashboard's latency and top-driver panels): a month's
p50/p95 or the ranking of 10,000 keys changes little within a minute, and reading them again costs
seconds on a large ledger. A report is reused for `ttl_s` after it was read, whatever its window's
end has moved to since; the cache is bounded (`max_entries`, oldest dropped first)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

from costwarden.domain.report import SpendQuery, SpendReport
from costwarden.ports import LedgerStore


class RecentReports:
    def __init__(self, store: LedgerStore, ttl_s: float = 60.0, max_entries: int = 256) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._max = max_entries
        self._cache: OrderedDict[SpendQuery, tuple[float, SpendReport]] = OrderedDict()

    async def spend(self, query: SpendQuery, now: float) -> SpendReport:
        """The report of `query`, or of the same query with an earlier end read less than `ttl_s` ago."""
        key = replace(query, end=None)
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self._ttl_s:
            return hit[1]
        report = await self._store.spend(query)
        self._cache[key] = (now, report)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return report
