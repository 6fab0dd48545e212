"""Off-peak windows: the clock is passed in."""

from __future__ import annotations

import calendar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from costwarden.domain.batch_window import Window, is_open, parse_window, seconds_until_open

DAY = calendar.timegm((2026, 12, 7, 0, 0, 0))  # a midnight UTC


def at(hour: int, minute: int = 0, second: int = 0) -> float:
    return DAY + hour * 3600 + minute * 60 + second


def test_parse() -> None:
    assert parse_window("22:00-06:00") == Window(22 * 60, 6 * 60)
    assert parse_window(" 00:00-24:00 ") == Window(0, 1440)
    for bad in ("22-06", "25:00-01:00", "10:60-11:00", "24:30-01:00", "", "10:00 - 11:00"):
        with pytest.raises(ValueError, match="window"):
            parse_window(bad)


def test_a_window_past_midnight() -> None:
    night = (parse_window("22:00-06:00"),)
    assert is_open(night, at(23, 59)) and is_open(night, at(0)) and is_open(night, at(5, 59, 59))
    assert not is_open(night, at(6)) and not is_open(night, at(12)) and not is_open(night, at(21, 59))
    assert seconds_until_open(night, at(21, 0)) == 3600
    assert seconds_until_open(night, at(6, 0)) == 16 * 3600
    assert seconds_until_open(night, at(23)) == 0


def test_no_windows_is_always_open_and_several_take_the_nearest() -> None:
    assert is_open((), at(12))
    two = (parse_window("01:00-02:00"), parse_window("13:00-14:00"))
    assert seconds_until_open(two, at(12, 30)) == 1800
    assert seconds_until_open(two, at(2, 0)) == 11 * 3600
    assert is_open((parse_window("00:00-24:00"),), at(23, 59, 59))
    assert not is_open((parse_window("05:00-05:00"),), at(5))


@given(st.integers(0, 1439), st.integers(0, 1440), st.floats(0, 86_400 * 3, allow_nan=False))
def test_waiting_always_lands_in_the_window(start: int, end: int, offset: float) -> None:
    windows = (Window(start, end),)
    now = DAY + offset
    wait = seconds_until_open(windows, now)
    if start == end:
        assert wait == 86400.0
        return
    assert 0 <= wait <= 86400
    assert is_open(windows, now + wait + 1e-6)
