"""The MLPerf Server-style search: the highest arrival rate whose run still meets the SLO.

Pure state: ask `next_rate()`, run the load at that rate, `record()` whether it met the SLO, repeat
until `next_rate()` is None. The rate doubles while runs pass, then bisects between the highest
passing and the lowest failing rate until they are within `tolerance` of each other.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class RateSearch:
    """Requests per second; `low` is the highest rate that passed, `high` the lowest that failed."""

    start: float
    max_rate: float
    min_rate: float = 0.1
    tolerance: float = 0.1  # stop when high / low <= 1 + tolerance
    max_steps: int = 16
    low: float | None = None
    high: float | None = None
    steps: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.min_rate <= self.start <= self.max_rate:
            raise ValueError("need 0 < min_rate <= start <= max_rate")
        if self.tolerance <= 0 or self.max_steps < 1:
            raise ValueError("need tolerance > 0 and max_steps >= 1")

    def next_rate(self) -> float | None:
        """The next rate to try, or None when the search is over."""
        if self.steps >= self.max_steps:
            return None
        low, high = self.low, self.high
        if low is None and high is None:
            return self.start
        if high is None:
            assert low is not None
            return None if low >= self.max_rate else min(low * 2, self.max_rate)
        if low is None:
            return None if high / 2 < self.min_rate else high / 2
        if high <= low * (1 + self.tolerance):
            return None
        return (low + high) / 2

    def record(self, rate: float, passed: bool) -> RateSearch:
        """The search after a run at `rate` passed or failed."""
        low, high = self.low, self.high
        if passed:
            low = rate if low is None else max(low, rate)
        else:
            high = rate if high is None else min(high, rate)
        return replace(self, low=low, high=high, steps=self.steps + 1)

    @property
    def best(self) -> float | None:
        """The highest rate that met the SLO (None: even the lowest rate tried missed it)."""
        return self.low
