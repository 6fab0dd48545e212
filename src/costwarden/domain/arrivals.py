"""When an open-loop benchmark sends its requests: evenly spaced or Poisson arrivals at a rate."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Literal

Arrival = Literal["poisson", "uniform"]


def arrival_times(rate: float, duration_s: float, kind: Arrival, rng: random.Random) -> Iterator[float]:
    """Offsets in seconds from the start, ascending, all below `duration_s`, at `rate` per second
    on average (exactly, for uniform). Poisson gaps are exponential, so bursts and queueing show."""
    if rate <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be above zero")
    if kind == "uniform":
        count = int(rate * duration_s - 1e-9) + 1
        yield from (i / rate for i in range(count))
        return
    at = 0.0
    while True:
        yield at
        at += rng.expovariate(rate)
        if at >= duration_s:
            return
