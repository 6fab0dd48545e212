"""Report windows from users: absurd durations and dates are a clear QueryError or mean "all time",
never an exception that turns into a 500."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costwarden.domain.report import QueryError, SpendReport
from costwarden.services.reports import build_query, report_json

NOW = 1_796_170_000.0


@pytest.mark.parametrize("since", ["9999999999w", "9" * 400 + "d", "100000d"])
def test_a_window_longer_than_the_ledger_means_all_of_it(since: str) -> None:
    query = build_query(None, since, None, None, [], NOW)
    assert query.start is not None and 0.0 <= query.start < NOW
    assert report_json(SpendReport(query=query, rows=()))["from"] is not None


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("0001-01-01T00:00+14:00", None),  # before year 1 in UTC
        ("9999-12-31T23:59:59-14:00", None),  # after year 9999 in UTC
        (None, "9999-12-31T23:59-14:00"),
    ],
)
def test_a_date_outside_what_a_clock_can_say_is_a_query_error(start: str | None, end: str | None) -> None:
    with pytest.raises(QueryError, match="cannot read time"):
        build_query(None, None, start, end, [], NOW)


@settings(max_examples=300, deadline=None, database=None)
@given(
    since=st.one_of(st.none(), st.text(max_size=30), st.from_regex(r"\A\d{1,30}(\.\d{1,5})?[smhdw]\Z")),
    start=st.one_of(st.none(), st.text(max_size=40), st.datetimes().map(lambda d: d.isoformat())),
    end=st.one_of(st.none(), st.text(max_size=40), st.datetimes().map(lambda d: d.isoformat())),
)
def test_any_window_text_is_a_report_or_a_query_error(since: str | None, start: str | None, end: str | None) -> None:
    try:
        query = build_query(None, since, start, end, [], NOW)
    except QueryError:
        return
    report_json(SpendReport(query=query, rows=()))  # renders without raising
