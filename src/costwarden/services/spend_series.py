"""Spend over time for the dashboard: one spend report per hour or day bucket (UTC), each over
whole rollup buckets, so every bucket's totals equal the ledger's exactly; and unit costs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from costwarden.domain.money import ZERO
from costwarden.domain.report import QueryError, SpendQuery, SpendReport, SpendRow
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


async def spend_series(
    store: LedgerStore,
    group_by: tuple[str, ...],
    where: tuple[tuple[str, str], ...],
    start: float,
    end: float,
    step_s: int,
) -> list[Bucket]:
    """Reports per bucket over [start, end); the first and last bucket are clipped to the window."""
    buckets = []
    for first in bucket_starts(start, end, step_s):
        lower, upper = max(first, start), min(first + step_s, end)
        query = SpendQuery(group_by=group_by, start=lower, end=upper, where=where, percentiles=False)
        buckets.append(Bucket(lower, upper, await store.spend(query)))
    return buckets


def cost_per_1m_tokens(row: SpendRow) -> Decimal:
    """USD per million tokens (input + output); zero when the group used none."""
    tokens = row.input_tokens + row.output_tokens
    if tokens == 0:
        return ZERO
    return (row.cost_usd * 1_000_000 / tokens).quantize(Decimal("0.000001"))
