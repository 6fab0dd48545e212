"""`costwarden report` as a table: every figure whole at 80 columns, items shown, latencies short."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rich.console import Console

from costwarden.cli.report import render_csv, render_table
from costwarden.domain.report import SpendQuery, SpendReport, SpendRow

ROWS = (
    SpendRow(
        group=("search-ranking-team", "chat-large-deployment"),
        requests=123_456,
        errors=7,
        input_tokens=98_765_432,
        output_tokens=12_345_678,
        items=0,
        cost_usd=Decimal("1234.567890123"),
        p50_ms=8.312345678901234,
        p95_ms=1234.5678901234,
    ),
    SpendRow(group=("fraud", "iris"), requests=3, items=96, cost_usd=Decimal("1.02E-7"), p50_ms=2.0, p95_ms=3.0),
)
REPORT = SpendReport(
    query=SpendQuery(group_by=("team", "deployment")),
    rows=ROWS,
    total=SpendRow(group=(), requests=123_459, errors=7, items=96, cost_usd=Decimal("1234.567890225")),
)


def text(width: int) -> str:
    console = Console(width=width, record=True, file=None, force_terminal=False)
    with console.capture() as captured:
        console.print(render_table(REPORT, width=width))
    return captured.get()


@pytest.mark.parametrize("width", [80, 100, 240])
def test_costs_are_never_cut(width: int) -> None:
    out = text(width)
    assert max(len(line) for line in out.splitlines()) <= width
    for cost in ("1234.567890123", "0.000000102", "1234.567890225"):
        assert cost in out, out
    assert "fraud" in out and "total" in out


def test_a_wide_terminal_shows_every_column() -> None:
    out = text(240)
    for header in ("requests", "errors", "items", "in tok", "out tok", "cost USD", "per 1k req", "p50 ms", "p95 ms"):
        assert header in out
    assert "96" in out  # the items of the V2 rows
    assert "8.3" in out and "8.312" not in out


def test_a_narrow_terminal_says_what_it_left_out() -> None:
    out = text(80)
    assert "cost USD" in out
    assert "--format csv" in out


def test_csv_has_items_and_fixed_point_money() -> None:
    lines = render_csv(REPORT).splitlines()
    assert "items" in lines[0].split(",")
    assert "0.000000102" in lines[2]


def test_a_column_for_each_modal_unit_present_and_none_for_the_rest() -> None:
    rows = (
        SpendRow(group=("vision",), requests=2, images=3, audio_ms=61_500, cost_usd=Decimal("0.12")),
        SpendRow(group=("search",), requests=1, documents=250, cost_usd=Decimal("0.002")),
    )
    total = SpendRow(group=(), requests=3, images=3, audio_ms=61_500, documents=250, cost_usd=Decimal("0.122"))
    report = SpendReport(query=SpendQuery(group_by=("team",)), rows=rows, total=total)
    console = Console(width=200, record=True, file=None, force_terminal=False)
    with console.capture() as captured:
        console.print(render_table(report, width=200))
    out = captured.get()
    for header in ("images", "audio s", "docs"):
        assert header in out
    assert "61.500" in out  # audio in seconds, to the millisecond
    assert "reasoning tok" not in out and "chars" not in out
    assert "reasoning tok" not in text(200)  # a text-only report: no unit columns
    csv_header = render_csv(report).splitlines()[0].split(",")
    assert {"reasoning_tokens", "images", "audio_ms", "characters", "documents"} <= set(csv_header)
