"""Off-peak windows in which batch workers drain the queue: `HH:MM-HH:MM` in UTC, clock passed in.

A window whose end is before its start wraps past midnight (`22:00-06:00`); `00:00-24:00` is the
whole day. No windows at all means always open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DAY_MINUTES = 24 * 60
_WINDOW = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


@dataclass(frozen=True, slots=True)
class Window:
    start: int  # minutes after midnight UTC
    end: int  # exclusive; below start: wraps past midnight

    def contains(self, minute: float) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end


def parse_window(text: str) -> Window:
    """`"22:00-06:00"` -> Window; ValueError naming the text when it is not in that shape."""
    match = _WINDOW.match(text.strip())
    if match is None:
        raise ValueError(f"window {text!r} is not HH:MM-HH:MM (UTC, 24-hour clock)")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start > DAY_MINUTES or end > DAY_MINUTES:
        raise ValueError(f"window {text!r} goes past 24:00")
    return Window(start % DAY_MINUTES if start == DAY_MINUTES else start, end)


def minute_of_day(now: float) -> float:
    """Minutes after midnight UTC of the Unix time `now` (fractional)."""
    return (now % 86400.0) / 60.0


def is_open(windows: tuple[Window, ...], now: float) -> bool:
    if not windows:
        return True
    minute = minute_of_day(now)
    return any(w.contains(minute) for w in windows)


def seconds_until_open(windows: tuple[Window, ...], now: float) -> float:
    """0 when open now; else the seconds until the next window opens (at most a day)."""
    if is_open(windows, now):
        return 0.0
    minute = minute_of_day(now)
    waits = [((w.start - minute) % DAY_MINUTES) * 60.0 for w in windows if w.start != w.end]
    return min(waits) if waits else 86400.0
