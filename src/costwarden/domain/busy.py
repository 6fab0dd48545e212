"""Busy time of a replica set from request intervals: a sweep over starts and ends.

At each instant with k requests in flight on a deployment of r replicas, min(k, r) replicas are
busy, and that busy time is shared equally by the k requests (so with one replica the busy time is
the union of the intervals, overlaps split evenly). Times are seconds; the result is replica-seconds.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field


@dataclass(slots=True)
class IntervalSet:
    """Compact request intervals of one deployment: parallel arrays, groups as small integers.

    Intervals are clipped to the window when added; an interval that ends before it starts (a clock
    that jumped back) or lies outside the window is counted in `dropped`, never made up."""

    window_start: float
    window_end: float
    starts: array[float] = field(default_factory=lambda: array("d"))
    ends: array[float] = field(default_factory=lambda: array("d"))
    groups: array[int] = field(default_factory=lambda: array("l"))
    dropped: int = 0

    def add(self, start: float, end: float, group: int) -> bool:
        if not (end >= start) or end <= self.window_start or start >= self.window_end:
            self.dropped += 1
            return False
        self.starts.append(max(start, self.window_start))
        self.ends.append(min(end, self.window_end))
        self.groups.append(group)
        return True

    def __len__(self) -> int:
        return len(self.starts)


@dataclass(frozen=True, slots=True)
class BusyTime:
    """Busy replica-seconds: in all (`total`) and each group's equal share of it."""

    total: float
    by_group: dict[int, float]


def busy_time(intervals: IntervalSet, replicas: int) -> BusyTime:
    """Sweep the intervals in time order (starts first at the same instant, so a zero-length request
    costs nothing): the result does not depend on the order the intervals were added in."""
    if replicas < 1:
        raise ValueError("replicas must be at least 1")
    starts, ends, groups = intervals.starts, intervals.ends, intervals.groups
    n = len(starts)
    by_start = sorted(range(n), key=lambda i: (starts[i], groups[i]))
    by_end = sorted(range(n), key=lambda i: (ends[i], groups[i]))
    active: dict[int, int] = {}
    shares: dict[int, float] = {}
    in_flight = 0
    total = 0.0
    prev = 0.0
    si = ei = 0
    while ei < n:
        take_start = si < n and starts[by_start[si]] <= ends[by_end[ei]]
        index = by_start[si] if take_start else by_end[ei]
        now = starts[index] if take_start else ends[index]
        if in_flight and now > prev:
            busy = (now - prev) * min(in_flight, replicas)
            total += busy
            each = busy / in_flight
            for group, count in active.items():
                shares[group] = shares.get(group, 0.0) + each * count
        prev = now
        group = groups[index]
        if take_start:
            active[group] = active.get(group, 0) + 1
            in_flight += 1
            si += 1
        else:
            left = active[group] - 1
            if left:
                active[group] = left
            else:
                del active[group]
            in_flight -= 1
            ei += 1
    return BusyTime(total, shares)
