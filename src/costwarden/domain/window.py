"""Budget windows: calendar hours, days, ISO weeks and months in an IANA time zone, or rolling.

A window instance is a half-open interval [start, end) of Unix seconds with a stable key. Calendar
windows tile time exactly, across DST changes and month ends; rolling windows slide in buckets.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class WindowError(ValueError):
    """A window that cannot be used: unknown time zone, or a bad rolling duration."""


class Unit(StrEnum):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"  # ISO week: Monday 00:00 to Monday 00:00
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class WindowInstance:
    """One window instance: [start, end) in Unix seconds and the key of its counter at `now`.
    Cheap to hold: a caller may reuse it while `contains(now)` (bounds cost tens of microseconds)."""

    start: float
    end: float
    key: str

    def contains(self, now: float) -> bool:
        return self.start <= now < self.end


@dataclass(frozen=True, slots=True)
class Window:
    """Either a calendar `unit` aligned to the wall clock of `tz`, or `rolling_seconds` long.

    A rolling window is the last `buckets` buckets of `rolling_seconds / buckets` seconds each,
    aligned to the Unix epoch, so a shared counter store keeps one counter per bucket.
    """

    unit: Unit | None = Unit.MONTH
    tz: str = "UTC"
    rolling_seconds: int | None = None
    buckets: int = 24

    def __post_init__(self) -> None:
        if (self.unit is None) == (self.rolling_seconds is None):
            raise WindowError("a window has either a calendar unit or a rolling duration, not both")
        seconds = self.rolling_seconds
        if seconds is not None and (seconds <= 0 or self.buckets < 1 or seconds % self.buckets):
            raise WindowError(
                f"a rolling window of {seconds}s must be positive and split into a whole number of"
                f" seconds per bucket ({self.buckets} buckets)"
            )
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise WindowError(f"unknown time zone {self.tz!r}") from exc

    @classmethod
    def calendar(cls, unit: Unit, tz: str = "UTC") -> Window:
        return cls(unit=unit, tz=tz)

    @classmethod
    def rolling(cls, seconds: int, buckets: int = 24) -> Window:
        return cls(unit=None, rolling_seconds=seconds, buckets=buckets)

    @property
    def spec(self) -> str:
        """A stable id of the definition, e.g. `month@Europe/Berlin` or `rolling:86400s/24`."""
        if self.rolling_seconds is not None:
            return f"rolling:{self.rolling_seconds}s/{self.buckets}"
        return f"{self.unit}@{self.tz}"

    def describe(self) -> str:
        """For people: `month, Europe/Berlin` or `rolling 86400s`."""
        if self.rolling_seconds is not None:
            return f"rolling {self.rolling_seconds}s"
        return f"{self.unit}, {self.tz}"

    def bounds(self, now: float) -> tuple[float, float]:
        """The window instance containing `now` (Unix seconds) as [start, end); start <= now < end."""
        if self.rolling_seconds is not None:
            width = self.rolling_seconds // self.buckets
            index = math.floor(now) // width
            return float((index - self.buckets + 1) * width), float((index + 1) * width)
        start, end = _calendar_bounds(math.floor(now), _unit(self.unit), ZoneInfo(self.tz))
        return float(start), float(end)

    def instance(self, now: float) -> WindowInstance:
        """Bounds and key at `now` in one computation. For a rolling window the instance is valid
        until its current bucket ends, which is also when its bounds move."""
        start, end = self.bounds(now)
        key = self.key(now) if self.rolling_seconds is not None else self._calendar_key(start)
        return WindowInstance(start, end, key)

    def reset_at(self, now: float) -> float:
        """When the window rolls over (Unix seconds). For a rolling window: when its oldest bucket
        ages out, which releases some spend but not necessarily enough."""
        return self.bounds(now)[1]

    def key(self, now: float) -> str:
        """The id of the counter that spend at `now` goes into: the calendar window instance, e.g.
        `month@Europe/Berlin|2025-03-01T00:00:00+01:00`, or the rolling window's current bucket."""
        if self.rolling_seconds is not None:
            return f"{self.spec}|{math.floor(now) // (self.rolling_seconds // self.buckets)}"
        return self._calendar_key(self.bounds(now)[0])

    def _calendar_key(self, start: float) -> str:
        return f"{self.spec}|{self.local(start)}"

    def bucket_keys(self, now: float) -> tuple[str, ...]:
        """The counters whose sum is the window's total at `now`, oldest first."""
        if self.rolling_seconds is None:
            return (self.key(now),)
        current = math.floor(now) // (self.rolling_seconds // self.buckets)
        spec = self.spec
        return tuple(f"{spec}|{index}" for index in range(current - self.buckets + 1, current + 1))

    def retain_until(self, now: float) -> float:
        """When the counter `key(now)` stops being read and may be deleted (Unix seconds)."""
        end = self.bounds(now)[1]
        return end + self.rolling_seconds if self.rolling_seconds is not None else end

    def local(self, instant: float) -> str:
        """An instant as ISO 8601 in the window's zone, with its offset (for keys and messages)."""
        return datetime.fromtimestamp(instant, ZoneInfo(self.tz)).isoformat()


def _unit(unit: Unit | None) -> Unit:
    if unit is None:  # __post_init__ makes this unreachable; it narrows the type
        raise WindowError("a rolling window has no calendar unit")
    return unit


def _wall(instant: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(instant, zone).replace(tzinfo=None)


def _truncate(wall: datetime, unit: Unit) -> datetime:
    if unit is Unit.HOUR:
        return wall.replace(minute=0, second=0, microsecond=0)
    midnight = wall.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit is Unit.DAY:
        return midnight
    if unit is Unit.WEEK:
        return midnight - timedelta(days=midnight.weekday())
    return midnight.replace(day=1)


def _advance(start: datetime, unit: Unit) -> datetime:
    if unit is Unit.HOUR:
        return start + timedelta(hours=1)
    if unit is Unit.DAY:
        return start + timedelta(days=1)
    if unit is Unit.WEEK:
        return start + timedelta(days=7)
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


def _occurrences(wall: datetime, zone: ZoneInfo) -> list[int]:
    """The instants at which the clock of `zone` reads `wall`: two in a repeated hour, none in a gap."""
    found = {int(wall.replace(tzinfo=zone, fold=fold).timestamp()) for fold in (0, 1)}
    return sorted(t for t in found if _wall(t, zone) == wall)


def _bisect(low: int, high: int, reached: Callable[[int], bool]) -> int:
    """The first instant in (low, high] at which `reached` holds, given that it does not at `low`
    and does at `high`, and changes once in between."""
    while high - low > 1:
        middle = (low + high) // 2
        if reached(middle):
            high = middle
        else:
            low = middle
    return high


def _first_before(wall: datetime, low: int, high: int, zone: ZoneInfo) -> int:
    """The first instant in (low, high] at which the clock reads earlier than `wall`."""
    return _bisect(low, high, lambda t: _wall(t, zone) < wall)


def _boundaries(wall: datetime, zone: ZoneInfo, split_repeats: bool) -> list[int]:
    """The instants at which the window starting at wall time `wall` begins or is interrupted."""
    found = _occurrences(wall, zone)
    if not found:
        # A DST gap skips `wall`. PEP 495: fold=1 applies the offset after the transition, giving an
        # instant before it; fold=0 the offset before, one after. The jump lies between them.
        before, after = sorted(int(wall.replace(tzinfo=zone, fold=fold).timestamp()) for fold in (0, 1))
        return [_first_at_or_after(wall, before, after, zone)]
    if len(found) == 1:
        return found
    first, second = found
    if _wall(second - 1, zone) >= wall:  # the clock fell back to `wall` itself: an hour repeats
        return found if split_repeats else [first]
    # The clock fell back past `wall` (e.g. 00:01 -> 23:01): the earlier window resumes in between.
    return [first, _first_before(wall, first, second - 1, zone), second]


def _first_at_or_after(wall: datetime, low: int, high: int, zone: ZoneInfo) -> int:
    """The first instant in (low, high] at which the clock reads `wall` or later."""
    return _bisect(low, high, lambda t: _wall(t, zone) >= wall)


def _calendar_bounds(now: int, unit: Unit, zone: ZoneInfo) -> tuple[int, int]:
    # Boundaries are where the wall clock reaches (or jumps over) the start of a window, and where a
    # fall-back takes it back across one. Only an hour is split when the clock repeats it; a day,
    # week or month that repeats an hour stays one window.
    first = _truncate(_wall(now, zone), unit)
    split = unit is Unit.HOUR
    candidates = (*_boundaries(first, zone, split), *_boundaries(_advance(first, unit), zone, split))
    return max(t for t in candidates if t <= now), min(t for t in candidates if t > now)
