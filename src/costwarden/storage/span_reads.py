"""Totals-only reports of many spans of time in one statement: what a budget's rebuild reads for
the counters of its window (a rolling window's 60 buckets: `domain.budget.counter_spans`).

Each span is planned as its own report would be (`domain.rollup.plan`: whole buckets from the
query's cube, folded and pending cells, raw records for the partial buckets at its edges) and its
facts are tagged with the span's index; one statement sums them per span and group. So each span's
report is exactly the one `LedgerStore.spend` gives for it, read in one round trip, not one per span.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from costwarden.domain.report import SpendQuery, SpendReport
from costwarden.domain.rollup import cube_for, plan
from costwarden.storage.rollup_report import SUMS_SQL, Row, facts, sums_report, tagged
from costwarden.storage.spend_sql import POSTGRES, SQLITE, Dialect

if TYPE_CHECKING:  # the postgres extra: imported only where a PostgreSQL ledger is used
    import asyncpg

Span = tuple[float, float | None]  # [start, end) in Unix seconds; end None: open
# Spans per statement: SQLite allows 500 terms in a compound SELECT, and a span has up to four
# (folded and pending cells, raw records at either edge). A budget has at most 60 buckets.
CHUNK = 100


def chunks(spans: Sequence[Span]) -> list[Sequence[Span]]:
    return [spans[i : i + CHUNK] for i in range(0, len(spans), CHUNK)]


def spans_sql(query: SpendQuery, spans: Sequence[Span], dialect: Dialect, name: str) -> tuple[str, list[object]]:
    """One statement: span index, groups..., the sums of `SUMS` (cost in nano-dollars) per span
    and group of `query` (its window ignored; totals only)."""
    totals = replace(query, start=None, end=None, percentiles=False)
    grains = cube_for(totals).grains
    groups = "".join(f", {g}" for g in totals.group_by)
    params: list[object] = []
    parts: list[str] = []
    for index, (start, end) in enumerate(spans):
        parts += facts(totals, plan(start, end, grains), dialect, name, f"{index} AS span{groups}, ", params)
    union = " UNION ALL ".join(parts)
    return f"SELECT span{groups}, {SUMS_SQL} FROM ({union}) AS facts GROUP BY span{groups}", params


def span_reports(query: SpendQuery, spans: Sequence[Span], rows: list[Row]) -> list[SpendReport]:
    """Each span's totals-only report (its rows and total, ordered as a report's), from spans_sql's rows."""
    by_span = tagged(rows)
    return [
        sums_report(replace(query, start=start, end=end, percentiles=False), by_span.get(index, []))
        for index, (start, end) in enumerate(spans)
    ]


def spans_sqlite(conn: sqlite3.Connection, query: SpendQuery, spans: Sequence[Span]) -> list[SpendReport]:
    reports = []
    for part in chunks(spans):
        rows = [tuple(r) for r in conn.execute(*spans_sql(query, part, SQLITE, "sqlite"))]
        reports += span_reports(query, part, rows)
    return reports


async def spans_postgres(conn: asyncpg.Connection, query: SpendQuery, spans: Sequence[Span]) -> list[SpendReport]:
    """On a connection of the store's read pool, where JIT is off: one plan of a scan or two per span
    sums past `jit_above_cost`, and JIT would compile every scan (7 s for a team's 60 buckets at 1M
    records, for a read of ~0.1 s)."""
    reports = []
    for part in chunks(spans):
        sql, params = spans_sql(query, part, POSTGRES, "postgres")
        reports += span_reports(query, part, [tuple(r) for r in await conn.fetch(sql, *params)])
    return reports
