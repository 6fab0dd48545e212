"""Replica-seconds of a deployment whose replica count comes from Prometheus: Σ replicas(t) × step
over a range query's grid, exact in Decimal. Each point covers [t, t + step) cut to the window; a
grid step without a value (no data, Prometheus down) is a gap: counted and shown, never filled in."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class ReplicaSeconds:
    """Replica-seconds over the covered part of a window, the seconds covered, the grid steps with
    no value (gaps), the largest count seen (the concurrency cap of the request sweep) and the count
    at the last step that has one (None: no step has)."""

    replica_seconds: Decimal
    covered_seconds: Decimal
    gaps: int
    peak: int
    last: Decimal | None = None

    @property
    def mean(self) -> Decimal:
        return self.replica_seconds / self.covered_seconds if self.covered_seconds else ZERO


def grid(start: float, end: float, step: float) -> list[float]:
    """The range query's evaluation times: start, start + step, ... before end."""
    count = math.ceil((end - start) / step - 1e-9)  # float noise must not add a step
    return [start + k * step for k in range(max(count, 0))]


def replica_seconds(points: Iterable[tuple[float, str]], start: float, end: float, step: float) -> ReplicaSeconds:
    """`points` are (time, value) of a range query over [start, end) at `step` (values as Prometheus
    writes them; series summed where a query returns several). A value that is not a finite number
    of replicas ≥ 0 counts as a gap too."""
    steps = len(grid(start, end, step))
    by_step: dict[int, Decimal] = {}
    for at, value in points:
        try:
            count = Decimal(value)
        except InvalidOperation:
            continue
        k = round((at - start) / step)  # the grid point it was evaluated at
        if count.is_finite() and count >= 0 and 0 <= k < steps:
            by_step[k] = by_step.get(k, ZERO) + count
    total = covered = ZERO
    peak = 0
    start_d, end_d, step_d = Decimal(repr(start)), Decimal(repr(end)), Decimal(repr(step))
    for k, count in by_step.items():
        point = start_d + k * step_d
        span = min(point + step_d, end_d) - point
        total += count * span
        covered += span
        peak = max(peak, math.ceil(count))
    last = by_step[max(by_step)] if by_step else None
    return ReplicaSeconds(total, covered, steps - len(by_step), peak, last)
