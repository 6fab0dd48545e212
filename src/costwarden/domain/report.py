"""Spend reports: what to group by, which window, and the rows that come back."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

from costwarden.domain.money import ZERO
from costwarden.domain.record import UsageRecord

GROUP_DIMENSIONS: tuple[str, ...] = (
    "team",
    "project",
    "environment",
    "deployment",
    "key_id",
    "protocol",
    "endpoint",
    "model",
    "outcome",
)


# Membership filters: (dimension, values) pairs, each true of a record whose dimension is one of the
# values (`LedgerStore.spend_spans`: the rebuild of many budgets' scopes in one read).
Within = tuple[tuple[str, tuple[str, ...]], ...]


class QueryError(ValueError):
    """A report query naming an unknown dimension or an empty window."""


@dataclass(frozen=True, slots=True)
class SpendQuery:
    """Group ledger records by `group_by` over [start, end) (Unix seconds), filtered by `where`.

    `percentiles=False` asks for totals only (p50/p95 stay None): a budget rebuild needs no more,
    and latency histograms are the costly part of a long window's report.
    """

    group_by: tuple[str, ...]
    start: float | None = None
    end: float | None = None
    where: tuple[tuple[str, str], ...] = ()
    percentiles: bool = True

    def __post_init__(self) -> None:
        for name in (*self.group_by, *(k for k, _ in self.where)):
            if name not in GROUP_DIMENSIONS:
                allowed = ", ".join(GROUP_DIMENSIONS)
                raise QueryError(f"unknown dimension {name!r}; expected one of: {allowed}")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise QueryError("the window is empty: --to must be after --from")


@dataclass(frozen=True, slots=True)
class SpendRow:
    """Totals of one group. Money in USD; latencies in milliseconds (nearest-rank percentiles,
    exact or within the report's `percentile_error`)."""

    group: tuple[str | None, ...]
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    items: int = 0
    cost_usd: Decimal = ZERO
    p50_ms: float | None = None
    p95_ms: float | None = None
    reasoning_tokens: int = 0  # the modal units (docs/modalities.md), last: rows are built positionally
    images: int = 0
    audio_ms: int = 0
    characters: int = 0
    documents: int = 0

    @property
    def cost_per_1k_requests(self) -> Decimal:
        if self.requests == 0:
            return ZERO
        return (self.cost_usd * 1000 / self.requests).quantize(Decimal("0.000001"))


@dataclass(frozen=True, slots=True)
class SpendReport:
    """`percentile_error`: the relative error bound of p50/p95 (0: exact nearest rank; 0.01 when
    they come from rollup histograms, docs/scale.md)."""

    query: SpendQuery
    rows: tuple[SpendRow, ...]
    total: SpendRow = field(default_factory=lambda: SpendRow(group=()))
    percentile_error: float = 0.0


@dataclass(frozen=True, slots=True)
class RecordCursor:
    """A place in the ledger's newest-first order (started_at, then request_id, both descending):
    the last record of a page. The next page holds the records after it in that order."""

    started_at: float
    request_id: str

    @classmethod
    def of(cls, record: UsageRecord) -> RecordCursor:
        return cls(record.started_at, record.request_id)


def nearest_rank(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an ascending list (the same rule in every store)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]
