"""Percentiles of a sample (latencies in any one unit), by nearest rank: exact and reproducible.

The p-th percentile is the smallest sample with at least p % of the samples at or below it, so it
is always a value that was measured, and p100 is the maximum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

REPORTED = ("p50", "p90", "p95", "p99")
# The raw percentiles kept in a results file: 1..99, then the tail in finer steps.
RAW = (*(Decimal(p) for p in range(1, 100)), Decimal("99.5"), Decimal("99.9"), Decimal(100))


def rank(count: int, p: Decimal) -> int:
    """1-based nearest rank of percentile p (0 < p <= 100) among `count` sorted samples."""
    if count <= 0:
        raise ValueError("no samples")
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p} is outside (0, 100]")
    return max(1, math.ceil(p * count / 100))


def percentile(ordered: Sequence[float], p: Decimal | int | str) -> float:
    """The p-th percentile of samples sorted ascending."""
    return ordered[rank(len(ordered), Decimal(p)) - 1]


@dataclass(frozen=True, slots=True)
class Summary:
    """Count, mean and the reported percentiles of one sample, in the sample's unit."""

    count: int
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float

    def as_dict(self) -> dict[str, float]:
        return {"p50": self.p50, "p90": self.p90, "p95": self.p95, "p99": self.p99, "max": self.max, "mean": self.mean}


def summarize(samples: Sequence[float]) -> Summary | None:
    """The summary of the samples (any order), or None when there are none."""
    if not samples:
        return None
    ordered = sorted(samples)
    return Summary(
        count=len(ordered),
        mean=math.fsum(ordered) / len(ordered),
        p50=percentile(ordered, 50),
        p90=percentile(ordered, 90),
        p95=percentile(ordered, 95),
        p99=percentile(ordered, 99),
        max=ordered[-1],
    )


def raw_percentiles(samples: Sequence[float]) -> dict[str, float]:
    """{"p1": ..., "p99.9": ..., "p100": ...}: the sample's shape, for results files."""
    if not samples:
        return {}
    ordered = sorted(samples)
    return {f"p{p}": percentile(ordered, p) for p in RAW}


def median(values: Sequence[float]) -> float:
    """The usual median (mean of the two middle values for an even count)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
