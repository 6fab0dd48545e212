"""Spend over time for the dashboard: one spend report per hour or day bucket (UTC), each over
whole rollup buckets, so every bucket's totals equal the ledger's exactly; and unit costs.

Buckets that ended before `settled_s` ago are kept for `ttl_s` (a past hour changes only if a
replica's late spool replay lands in it): a page reloaded within that time reads only the current
bucket from the store. The cache is bounded (`max_entries`, oldest dropped first).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from operator import attrgetter
from typing import Any

from costwarden.domain.money import ZERO
from costwarden.domain.report import QueryError, SpendQuery, SpendReport, SpendRow
from costwarden.domain.usage import UNIT_FIELDS
from costwarden.ports import LedgerStore

STEPS: dict[str, int] = {"hour": 3600, "day": 86400}
MAX_BUCKETS = 400


@dataclass(frozen=True, slots=True)
class Bucket:
    start: float
    end: float
    report: SpendReport


def bucket_starts(start: float, end: float, step_s: int) -> list[float]:
    """Bucket starts aligned to the step (UTC) covering [start, end)."""
    first = math.floor(start / step_s) * step_s
    count = math.ceil((end - first) / step_s)
    if count > MAX_BUCKETS:
        raise QueryError(f"{count} buckets asked for; at most {MAX_BUCKETS}: use a longer step or a shorter window")
    return [float(first + i * step_s) for i in range(max(count, 0))]


def aligned(start: float, step_s: int) -> float:
    """The start of the step-long UTC bucket holding `start`: a window's first bucket is whole."""
    return float(math.floor(start / step_s) * step_s)


class SpendSeries:
    """Spend reports per bucket, with settled buckets cached (see the module's docstring)."""

    def __init__(self, store: LedgerStore, settled_s: float, ttl_s: float = 60.0, max_entries: int = 4096) -> None:
        self._store = store
        self._settled_s = settled_s
        self._ttl_s = ttl_s
        self._max = max_entries
        self._cache: OrderedDict[tuple[object, ...], tuple[float, SpendReport]] = OrderedDict()

    async def buckets(
        self,
        group_by: tuple[str, ...],
        where: tuple[tuple[str, str], ...],
        start: float,
        end: float,
        step_s: int,
        now: float,
    ) -> list[Bucket]:
        """Reports per bucket over [start, end); the last bucket is clipped to the window. Whole
        buckets not cached are read at once where the store can (from its cells at the step's grain)."""
        starts = bucket_starts(start, end, step_s)
        read = await self._whole(group_by, where, [b for b in starts if b >= start and b + step_s <= end], step_s, now)
        out = []
        for first in starts:
            lower, upper = max(first, start), min(first + step_s, end)
            report = read.get(int(first)) if (lower, upper) == (first, first + step_s) else None
            if report is None:
                report = await self._report(group_by, where, lower, upper, now)
            out.append(Bucket(lower, upper, report))
        return out

    async def _whole(
        self,
        group_by: tuple[str, ...],
        where: tuple[tuple[str, str], ...],
        starts: list[float],
        step_s: int,
        now: float,
    ) -> dict[int, SpendReport]:
        missing = [b for b in starts if self._cached((group_by, where, b, b + step_s), now) is None]
        if len(missing) < 2:
            return {}
        query = SpendQuery(group_by, missing[0], missing[-1] + step_s, where, percentiles=False)
        read = await self._store.spend_series(query, step_s)
        for bucket, report in (read or {}).items():
            self._keep((group_by, where, float(bucket), float(bucket + step_s)), report, now)
        return read or {}

    def _cached(self, key: tuple[object, ...], now: float) -> SpendReport | None:
        hit = self._cache.get(key)
        return hit[1] if hit is not None and now - hit[0] < self._ttl_s else None

    def _keep(self, key: tuple[object, ...], report: SpendReport, now: float) -> None:
        """Keep a settled bucket's report (its end, key[3], before `settled_s` ago)."""
        end = key[3]
        assert isinstance(end, int | float)
        if end <= now - self._settled_s:
            self._cache[key] = (now, report)
            self._cache.move_to_end(key)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)

    async def _report(
        self, group_by: tuple[str, ...], where: tuple[tuple[str, str], ...], start: float, end: float, now: float
    ) -> SpendReport:
        key = (group_by, where, start, end)
        hit = self._cached(key, now)
        if hit is not None:
            return hit
        report = await self._store.spend(
            SpendQuery(group_by=group_by, start=start, end=end, where=where, percentiles=False)
        )
        self._keep(key, report, now)
        return report


def merged(buckets: list[Bucket]) -> tuple[list[SpendRow], SpendRow]:
    """The window's rows (highest cost first) and total, summed exactly from its buckets' totals-only
    reports: the same figures as one report over the whole window, without reading it again. Every
    count adds up, the modal units (images, audio, characters, ...) too."""
    sums: dict[tuple[str | None, ...], list[Any]] = {}
    total: list[Any] = _zero()
    for bucket in buckets:
        for row in bucket.report.rows:
            into = sums.get(row.group)
            if into is None:
                sums[row.group] = into = _zero()
            _add(into, row)
        _add(total, bucket.report.total)
    rows = [_row(group, values) for group, values in sums.items()]
    rows.sort(key=lambda r: (-r.cost_usd, str(r.group)))
    return rows, _row((), total)


_COUNTS = ("requests", "errors", "input_tokens", "output_tokens", "cached_tokens", "items", *UNIT_FIELDS)


def _zero() -> list[Any]:
    return [*(0 for _ in _COUNTS), ZERO]


def _row(group: tuple[str | None, ...], values: list[Any]) -> SpendRow:
    return SpendRow(group, cost_usd=values[-1], **dict(zip(_COUNTS, values, strict=False)))


_GET = attrgetter(*_COUNTS)


def _add(into: list[Any], row: SpendRow) -> None:
    for i, value in enumerate(_GET(row)):
        into[i] += value
    into[-1] += row.cost_usd


def cost_per_1m_tokens(row: SpendRow) -> Decimal:
    """USD per million tokens (input + output); zero when the group used none."""
    tokens = row.input_tokens + row.output_tokens
    if tokens == 0:
        return ZERO
    return (row.cost_usd * 1_000_000 / tokens).quantize(Decimal("0.000001"))
