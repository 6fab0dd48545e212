"""The FOCUS export's window: ISO times or durations, and a clear error for anything else."""

from __future__ import annotations

import pytest

from costwarden.domain.report import QueryError
from costwarden.services.focus import focus_window

NOW = 1_800_000_000.0


def test_a_duration_counts_back_from_now_and_until_defaults_to_now() -> None:
    window = focus_window("24h", None, NOW)
    assert (window.start, window.end) == (NOW - 86_400, NOW)


def test_iso_times_are_utc_unless_an_offset_is_given() -> None:
    window = focus_window("2026-11-01", "2026-11-01T02:00+01:00", NOW)
    assert window.end - window.start == 3600


def test_a_window_longer_than_the_epoch_starts_at_the_epoch() -> None:
    assert focus_window("100000d", None, NOW).start == 0.0
    assert focus_window("99999999999999999999d", None, NOW).start == 0.0


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        (None, None, "give --since"),
        ("", None, "give --since"),
        ("yesterday", None, "cannot read --since 'yesterday'"),
        ("2026-13-01", None, "cannot read --since"),
        ("-5h", None, "cannot read --since"),
        ("2026-11-02", "2026-11-01", "the window is empty"),
        ("2026-11-01", "2026-11-01", "the window is empty"),
        ("2026-11-01", "next week", "cannot read time 'next week'"),
    ],
)
def test_bad_windows_are_refused_with_a_message(since: str | None, until: str | None, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        focus_window(since, until, NOW)
