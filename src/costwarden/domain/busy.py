"""Busy time of a replica set from request intervals: a sweep over starts and ends, in exact integers.

At each instant with k requests in flight on a deployment of r replicas, min(k, r) replicas are
busy, and that busy time is shared equally by the k requests (so with one replica the busy time is
the union of the intervals, overlaps split evenly). Times are whole nanoseconds.

The sweep keeps, per group and concurrency level k, the request-nanoseconds the group's requests
spent in flight while k requests were (`Profile`: (group, k) -> integer). That is all the split
needs: a group's busy replica-time is Σ_k min(k, r) / k × X[g, k], an exact rational; the total is
the sum over groups. Integers add, so the profile of a window is the sum of the profiles of any
partition of it into segments (hours folded once, read back later): the allocation from folded hours
equals the one from a single sweep over the whole window exactly, whatever the replica count.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

NS = 1_000_000_000
Profile = dict[tuple[int, int], int]  # (group, requests in flight) -> request-nanoseconds


def to_ns(seconds: float) -> int:
    """A time or length in seconds as whole nanoseconds (round half to even). The whole seconds are
    split off first: an epoch time times 10^9 as a float would be off by up to 128 ns."""
    whole = math.floor(seconds)
    return int(whole) * NS + round((seconds - whole) * NS)


def request_interval(
    started_at: float, ended_at: float, upstream_ms: float, horizon_s: float
) -> tuple[int, int] | None:
    """A ledger record's upstream interval in nanoseconds: [ended_at - upstream_ms, ended_at], kept
    within [started_at, started_at + horizon_s] so that a record counts only within `horizon_s` of its
    start (a window reads the records started from `horizon_s` before it: any window, or any hour of
    it, reads every record that can count in it). None for a NaN or infinite time."""
    if not (math.isfinite(started_at) and math.isfinite(ended_at) and math.isfinite(upstream_ms)):
        return None
    end = to_ns(ended_at)
    began = to_ns(started_at)
    return max(end - round(upstream_ms * 1_000_000), began), min(end, began + to_ns(horizon_s))


@dataclass(slots=True)
class IntervalSet:
    """Compact request intervals of one deployment: parallel arrays of nanoseconds, groups as small
    integers, each request's tokens.

    Intervals are clipped to the window when added; an interval that ends before it starts (a clock
    that jumped back) or lies outside the window is counted in `dropped`, never made up."""

    window_start: float
    window_end: float
    starts: array[int] = field(default_factory=lambda: array("q"))
    ends: array[int] = field(default_factory=lambda: array("q"))
    groups: array[int] = field(default_factory=lambda: array("q"))
    dropped: int = 0
    _lo: int = 0
    _hi: int = 0

    def __post_init__(self) -> None:
        self._lo, self._hi = to_ns(self.window_start), to_ns(self.window_end)

    def add(self, start: float, end: float, group: int) -> bool:
        if not (math.isfinite(start) and math.isfinite(end)):
            self.dropped += 1
            return False
        return self.add_ns(to_ns(start), to_ns(end), group)

    def add_ns(self, start: int, end: int, group: int) -> bool:
        if end < start or end <= self._lo or start >= self._hi:
            self.dropped += 1
            return False
        self.starts.append(max(start, self._lo))
        self.ends.append(min(end, self._hi))
        self.groups.append(group)
        return True

    def __len__(self) -> int:
        return len(self.starts)


@dataclass(frozen=True, slots=True)
class BusyTime:
    """Busy replica-seconds: in all (`total`) and each group's equal share of it (each the exact
    rational rounded once to a float, so equal profiles give equal floats)."""

    total: float
    by_group: dict[int, float]


def profile(starts: Sequence[int], ends: Sequence[int], groups: Sequence[int], cuts: Sequence[int]) -> list[Profile]:
    """The sweep: for each segment [cuts[i], cuts[i+1]), the request-nanoseconds per (group,
    requests in flight). Intervals (any order; ends >= starts) are counted only within
    [cuts[0], cuts[-1]); the result does not depend on their order (integer sums)."""
    out: list[Profile] = [{} for _ in range(max(len(cuts) - 1, 0))]
    if not out:
        return out
    lo, hi = cuts[0], cuts[-1]
    by_end = [i for i in range(len(starts)) if ends[i] > lo and starts[i] < hi and ends[i] > starts[i]]
    by_start = sorted(by_end, key=starts.__getitem__)  # index lists: ~36 bytes a request each
    by_end.sort(key=ends.__getitem__)
    active: dict[int, int] = {}  # group -> its requests in flight
    in_flight = 0
    prev = lo
    seg = 0
    si = ei = 0
    n = len(by_start)
    while ei < n:
        take_start = si < n and starts[by_start[si]] <= ends[by_end[ei]]
        if take_start:
            index = by_start[si]
            now = max(starts[index], lo)
        else:
            index = by_end[ei]
            now = min(ends[index], hi)
        group = groups[index]
        if in_flight and now > prev:
            while prev < now:  # split at the cuts in between
                while cuts[seg + 1] <= prev:
                    seg += 1
                upto = min(now, cuts[seg + 1])
                part, dt = out[seg], upto - prev
                for g, count in active.items():
                    key = (g, in_flight)
                    part[key] = part.get(key, 0) + count * dt
                prev = upto
        prev = now
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
    return out


def add_profile(into: Profile, part: Mapping[tuple[int, int], int]) -> None:
    for key, value in part.items():
        into[key] = into.get(key, 0) + value


def exact_busy(prof: Mapping[tuple[int, int], int], replicas: int) -> dict[int, Fraction]:
    """Each group's busy replica-seconds, exactly: Σ_k min(k, r) / k × request-ns / 10^9."""
    if replicas < 1:
        raise ValueError("replicas must be at least 1")
    out: dict[int, Fraction] = {}
    for (group, k), request_ns in prof.items():
        out[group] = out.get(group, Fraction(0)) + Fraction(min(k, replicas) * request_ns, k * NS)
    return out


def busy_from_profile(prof: Mapping[tuple[int, int], int], replicas: int, groups: Iterable[int] = ()) -> BusyTime:
    exact = exact_busy(prof, replicas)
    for g in groups:  # groups with requests but no busy time (zero-length) keep a row
        exact.setdefault(g, Fraction(0))
    return BusyTime(float(sum(exact.values(), Fraction(0))), {g: float(v) for g, v in exact.items()})


def busy_time(intervals: IntervalSet, replicas: int) -> BusyTime:
    """The window's busy time from one sweep (see `profile`); exact, rounded once to floats."""
    if replicas < 1:
        raise ValueError("replicas must be at least 1")
    cuts = [intervals._lo, intervals._hi] if intervals._hi > intervals._lo else []
    parts = profile(intervals.starts, intervals.ends, intervals.groups, cuts)
    return busy_from_profile(parts[0] if parts else {}, replicas, set(intervals.groups))
