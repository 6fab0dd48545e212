"""Budget windows: calendar windows tile time across DST changes and month ends; rolling windows slide."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costwarden.domain.window import Unit, Window, WindowError

FAST = settings(max_examples=200, deadline=None, database=None)
# UTC; a European DST zone; a 30-minute DST shift; DST at midnight; a 5:45 offset; a skipped day
# (Apia, 2011-12-30); a fall-back that crosses midnight (Goose Bay, 00:01 -> 23:01 until 2010).
ZONES = (
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Asia/Kathmandu",
    "Pacific/Apia",
    "America/Goose_Bay",
)
INSTANTS = st.floats(min_value=0, max_value=2_200_000_000, allow_nan=False)  # 1970 to 2039


def at(zone: str, text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


@FAST
@given(zone=st.sampled_from(ZONES), unit=st.sampled_from(list(Unit)), now=INSTANTS)
def test_every_instant_lies_in_its_window_and_windows_tile(zone: str, unit: Unit, now: float) -> None:
    window = Window.calendar(unit, zone)
    start, end = window.bounds(now)
    assert start <= now < end
    # The same window from anywhere inside it, the same key, and the neighbours meet it exactly.
    assert window.bounds(start) == (start, end)
    assert window.bounds(end - 1e-3) == (start, end)
    assert window.key(start) == window.key(now) == window.key(end - 1e-3)
    following = window.bounds(end)
    assert following[0] == end < following[1]
    assert window.bounds(start - 1e-3)[1] == start
    assert window.key(end) != window.key(now) != window.key(start - 1e-3)
    assert window.reset_at(now) == end


@pytest.mark.parametrize(
    ("unit", "first", "stop", "expected"),
    [
        (Unit.HOUR, "2025-10-01T00:00", "2025-11-01T00:00", 31 * 24 + 1),
        (Unit.HOUR, "2025-03-01T00:00", "2025-04-01T00:00", 31 * 24 - 1),
        (Unit.DAY, "2025-01-01T00:00", "2026-01-01T00:00", 365),
        (Unit.WEEK, "2025-01-01T00:00", "2026-01-01T00:00", 53),
        (Unit.MONTH, "2025-01-01T00:00", "2026-01-01T00:00", 12),
    ],
)
def test_berlin_windows_tile_without_gap_or_overlap(unit: Unit, first: str, stop: str, expected: int) -> None:
    window = Window.calendar(unit, "Europe/Berlin")
    begin, finish = at("Europe/Berlin", first), at("Europe/Berlin", stop)
    current = window.instance(begin)
    keys: set[str] = set()
    while current.start < finish:
        keys.add(current.key)
        following = window.instance(current.end)
        assert following.start == current.end
        current = following
    assert len(keys) == expected


def test_dst_days_are_23_and_25_hours_and_the_repeated_hour_is_two_hours() -> None:
    day = Window.calendar(Unit.DAY, "Europe/Berlin")
    spring = day.bounds(at("Europe/Berlin", "2025-03-30T12:00"))
    autumn = day.bounds(at("Europe/Berlin", "2025-10-26T12:00"))
    assert spring[1] - spring[0] == 23 * 3600
    assert autumn[1] - autumn[0] == 25 * 3600
    assert day.local(autumn[0]) == "2025-10-26T00:00:00+02:00"

    hour = Window.calendar(Unit.HOUR, "Europe/Berlin")
    first = hour.bounds(at("Europe/Berlin", "2025-10-26T02:30"))  # fold=0: still summer time
    second = hour.bounds(first[1])
    assert first[1] - first[0] == second[1] - second[0] == 3600
    assert hour.key(first[0]).endswith("2025-10-26T02:00:00+02:00")
    assert hour.key(second[0]).endswith("2025-10-26T02:00:00+01:00")
    # 02:00-03:00 does not exist on the spring day: 01:00 is followed directly by 03:00.
    before_gap = hour.bounds(at("Europe/Berlin", "2025-03-30T01:30"))
    assert hour.local(before_gap[1]) == "2025-03-30T03:00:00+02:00"


def test_months_have_their_lengths_and_reset_at_local_midnight() -> None:
    month = Window.calendar(Unit.MONTH, "Europe/Berlin")
    feb = month.bounds(at("Europe/Berlin", "2024-02-29T23:59:59"))
    assert (feb[1] - feb[0]) / 86400 == 29
    march = month.bounds(at("Europe/Berlin", "2025-03-15T00:00"))
    assert march[1] - march[0] == 31 * 86400 - 3600  # loses the hour of the DST change
    assert month.local(month.reset_at(at("Europe/Berlin", "2025-12-31T23:59:59"))) == "2026-01-01T00:00:00+01:00"
    assert month.key(march[0]) == "month@Europe/Berlin|2025-03-01T00:00:00+01:00"


def test_a_day_that_starts_in_a_dst_gap_starts_when_the_clock_jumps() -> None:
    day = Window.calendar(Unit.DAY, "America/Santiago")  # 2024-09-08: 00:00 -> 01:00
    start, end = day.bounds(at("America/Santiago", "2024-09-08T12:00"))
    assert day.local(start) == "2024-09-08T01:00:00-03:00"
    assert end - start == 23 * 3600
    assert day.bounds(start - 1)[1] == start


def test_weeks_start_on_monday() -> None:
    week = Window.calendar(Unit.WEEK, "UTC")
    start, end = week.bounds(at("UTC", "2025-06-01T10:00"))  # a Sunday
    assert week.local(start) == "2025-05-26T00:00:00+00:00"
    assert end - start == 7 * 86400


@FAST
@given(
    seconds=st.sampled_from([60, 3600, 86400, 7 * 86400]),
    buckets=st.sampled_from([1, 4, 6, 12, 60]),
    now=INSTANTS,
)
def test_rolling_windows_slide_by_buckets(seconds: int, buckets: int, now: float) -> None:
    window = Window.rolling(seconds, buckets)
    start, end = window.bounds(now)
    assert start <= now < end
    assert end - start == seconds
    keys = window.bucket_keys(now)
    assert len(keys) == len(set(keys)) == buckets
    assert keys[-1] == window.key(now)
    assert window.reset_at(now) == end
    assert window.bucket_keys(end)[:-1] == keys[1:]  # the oldest bucket ages out, one new one
    assert window.retain_until(now) == end + seconds


def test_definitions_that_cannot_be_used_are_refused() -> None:
    with pytest.raises(WindowError, match="unknown time zone 'Mars/Olympus'"):
        Window.calendar(Unit.DAY, "Mars/Olympus")
    with pytest.raises(WindowError, match="whole number of seconds per bucket"):
        Window.rolling(100, 7)
    with pytest.raises(WindowError, match="must be positive"):
        Window.rolling(0)
    with pytest.raises(WindowError, match="not both"):
        Window(unit=Unit.DAY, rolling_seconds=60)


def test_specs_and_descriptions() -> None:
    assert Window.calendar(Unit.MONTH, "Europe/Berlin").spec == "month@Europe/Berlin"
    assert Window.rolling(86400).spec == "rolling:86400s/24"
    assert Window.calendar(Unit.DAY).describe() == "day, UTC"
    assert Window.rolling(3600, 6).describe() == "rolling 3600s"
