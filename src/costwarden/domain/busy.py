"""Busy time of a replica set from request intervals: a sweep over starts and ends.

At each instant with k requests in flight on a deployment of r replicas, min(k, r) replicas are
busy, and that busy time is shared equally by the k requests (so with one replica the busy time is
the union of the intervals, overlaps split evenly). Times are seconds; the result is replica-seconds.
"""

from __future__ import annotations

import math
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
    """One sweep over the sorted starts and ends keeps F(t), the busy time one in-flight request has
    been given so far (the integral of min(k, r) / k); a request's share is F(end) - F(start). Each
    group's shares are summed with math.fsum (exactly rounded), so the result does not depend on the
    order the intervals were added in."""
    if replicas < 1:
        raise ValueError("replicas must be at least 1")
    starts, ends, groups = intervals.starts, intervals.ends, intervals.groups
    n = len(starts)
    by_start = sorted(range(n), key=starts.__getitem__)
    by_end = sorted(range(n), key=ends.__getitem__)
    share = array("d", bytes(8 * n))  # -F(start), then + F(end)
    in_flight = 0
    total = given = prev = 0.0
    si = ei = 0
    while ei < n:
        # Starts first at the same instant: a zero-length request then costs nothing.
        take_start = si < n and starts[by_start[si]] <= ends[by_end[ei]]
        index = by_start[si] if take_start else by_end[ei]
        now = starts[index] if take_start else ends[index]
        if in_flight and now > prev:
            busy = (now - prev) * (in_flight if in_flight < replicas else replicas)
            total += busy
            given += busy / in_flight
        prev = now
        if take_start:
            share[index] = -given
            in_flight += 1
            si += 1
        else:
            share[index] += given
            in_flight -= 1
            ei += 1
    per_group: dict[int, list[float]] = {}
    for index in range(n):
        per_group.setdefault(groups[index], []).append(share[index])
    return BusyTime(total, {group: math.fsum(parts) for group, parts in per_group.items()})
