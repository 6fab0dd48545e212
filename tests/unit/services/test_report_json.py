"""The JSON and CSV shape of spend reports: fixed-point money, ISO 8601 times, rounded latencies."""

from __future__ import annotations

import base64
import math
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costwarden.domain.report import QueryError, RecordCursor, SpendQuery, SpendReport, SpendRow
from costwarden.services.reports import decode_cursor, encode_cursor, record_json, report_json, row_json
from tests.unit.storage.sample import record

TINY = Decimal("1.02E-7")


def test_row_money_is_fixed_point() -> None:
    data = row_json(SpendRow(group=("a",), requests=1, cost_usd=TINY), ("team",))
    assert data["cost_usd"] == "0.000000102"
    assert data["cost_per_1k_requests_usd"] == "0.000102000"
    empty = row_json(SpendRow(group=()), ())
    assert (empty["cost_usd"], empty["cost_per_1k_requests_usd"]) == ("0.000000000", "0.000000000")


def test_latencies_are_rounded_to_ten_microseconds() -> None:
    data = row_json(SpendRow(group=(), requests=2, p50_ms=8.312345678901234, p95_ms=1234.5678901234), ())
    assert (data["p50_latency_ms"], data["p95_latency_ms"]) == (8.31, 1234.57)
    assert row_json(SpendRow(group=()), ())["p50_latency_ms"] is None


def test_the_window_is_iso_8601_with_a_zone() -> None:
    query = SpendQuery(group_by=("team",), start=1_764_633_600.0, end=1_764_637_200.5)
    data = report_json(SpendReport(query=query, rows=()))
    assert (data["from"], data["to"]) == ("2025-12-02T00:00:00.000Z", "2025-12-02T01:00:00.500Z")
    assert report_json(SpendReport(query=SpendQuery(group_by=()), rows=()))["from"] is None


@pytest.mark.parametrize(
    "cursor",
    [
        RecordCursor(1_764_633_600.123456, "req-1"),
        RecordCursor(0.1 + 0.2, "id with spaces, commas and ünïcode"),
        RecordCursor(1e-300, ""),
    ],
)
def test_a_cursor_token_round_trips_exactly(cursor: RecordCursor) -> None:
    token = encode_cursor(cursor)
    assert token.isascii() and "=" not in token and "/" not in token and "+" not in token  # safe in a URL
    assert decode_cursor(token) == cursor


@pytest.mark.parametrize(
    "token", ["", "x", "!!!!", "bnVsbA", "WzEsMiwzXQ", "WyJhIiwiYiJd", "WzEuMCwyXQ", "W05hTiwiYSJd"]
)
def test_a_bad_cursor_token_is_a_query_error(token: str) -> None:
    with pytest.raises(QueryError, match="cursor"):
        decode_cursor(token)


def test_a_record_as_json_has_iso_times_and_fixed_point_money() -> None:
    data = record_json(record("r1", started_at=1_764_633_600.25, ended_at=1_764_633_600.75, cost_usd=TINY))
    assert data["started_at"] == "2025-12-02T00:00:00.250000Z"
    assert data["ended_at"] == "2025-12-02T00:00:00.750000Z"
    assert data["cost_usd"] == "0.000000102"
    assert data["request_id"] == "r1" and data["tags"] == {"feature": "chat"}


@settings(max_examples=500, deadline=None, database=None)
@given(st.one_of(st.text(max_size=60), st.binary(max_size=60).map(lambda b: base64.urlsafe_b64encode(b).decode())))
def test_any_cursor_text_decodes_or_is_a_query_error(token: str) -> None:
    try:
        cursor = decode_cursor(token)
    except QueryError:
        return
    assert isinstance(cursor.started_at, float) and math.isfinite(cursor.started_at)
    assert isinstance(cursor.request_id, str)
