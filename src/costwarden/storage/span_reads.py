"""Totals-only reports of many spans of time in one statement: what a budget's rebuild reads for
the counters of its window (a rolling window's 60 buckets: `domain.budget.counter_spans`).

Each span is planned as its own report would be (`domain.rollup.plan`: whole buckets from the
query's cube, folded and pending cells, raw records for the partial buckets at its edges) and its
facts are tagged with the span's index; one statement sums them per span and group. So each span's
report is exactly the one `LedgerStore.spend` gives for it, read in one round trip, not one per span.
Raw parts that follow each other (every bucket of a key budget: the key cubes hold days, its buckets
are 12 hours) are read in one range scan, each record tagged with its part's span.

Many budgets' scopes are read at once (`within`): grouped by their dimensions, each dimension among
the scopes' values, a list given once as one parameter (`= ANY($1)` on PostgreSQL, `IN (SELECT value
FROM json_each(?1))` on SQLite) that every part of the statement names; so 500 key budgets cost one
statement, and each budget's rows are those one read of its own scope gives.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import orjson

from costwarden.domain.report import SpendQuery, SpendReport, Within
from costwarden.domain.rollup import cube_for, plan
from costwarden.storage.rollup_report import SUMS_SQL, RawPart, Row, facts, sums_report, tagged, tagged_raw
from costwarden.storage.spend_sql import POSTGRES, SQLITE, Dialect

if TYPE_CHECKING:  # the postgres extra: imported only where a PostgreSQL ledger is used
    import asyncpg

Span = tuple[float, float | None]  # [start, end) in Unix seconds; end None: open
# Spans per statement: SQLite allows 500 terms in a compound SELECT, and a span has up to four
# (folded and pending cells, raw records at either edge). A budget has at most 60 buckets.
CHUNK = 100


def chunks(spans: Sequence[Span]) -> list[Sequence[Span]]:
    return [spans[i : i + CHUNK] for i in range(0, len(spans), CHUNK)]


# Numbered parameters on SQLite (`?3`), so that every part names the lists of `within` by theirs.
_NUMBERED = {"sqlite": Dialect(placeholder=lambda i: f"?{i}", cost_sum=SQLITE.cost_sum), "postgres": POSTGRES}
_MEMBER = {"sqlite": "{column} IN (SELECT value FROM json_each({mark}))", "postgres": "{column} = ANY({mark})"}


def _within(query: SpendQuery, within: Within, dialect: Dialect, name: str, params: list[object]) -> tuple[str, ...]:
    """The membership clauses of `within`, their lists appended to `params` (first, each once)."""
    clauses = []
    for column, values in within:
        assert column in query.group_by, f"the read groups by {column!r}: it holds every scope's rows apart"
        params.append(orjson.dumps(values).decode() if name == "sqlite" else list(values))
        clauses.append(_MEMBER[name].format(column=column, mark=dialect.placeholder(len(params))))
    return tuple(clauses)


def spans_sql(
    query: SpendQuery, spans: Sequence[Span], dialect: Dialect, name: str, within: Within = ()
) -> tuple[str, list[object]]:
    """One statement: span index, groups..., the sums of `SUMS` (cost in nano-dollars) per span
    and group of `query` (its window ignored; totals only), of the records within `within`."""
    totals = replace(query, start=None, end=None, percentiles=False)
    grains = cube_for(totals).grains
    groups = "".join(f", {g}" for g in totals.group_by)
    params: list[object] = []
    dialect = _NUMBERED[name]
    members = _within(totals, within, dialect, name, params)
    parts: list[str] = []
    runs: list[list[RawPart]] = []  # the spans' raw parts, consecutive ones together
    for index, (start, end) in enumerate(spans):
        p = plan(start, end, grains)
        parts += facts(totals, replace(p, raw=()), dialect, name, f"{index} AS span{groups}, ", params, members)
        for lo, hi in p.raw:
            if runs and lo is not None and runs[-1][-1][2] == lo:
                runs[-1].append((index, lo, hi))
            else:
                runs.append([(index, lo, hi)])
    parts += [tagged_raw(totals, run, dialect, name, groups, params, members) for run in runs]
    union = " UNION ALL ".join(parts)
    return f"SELECT span{groups}, {SUMS_SQL} FROM ({union}) AS facts GROUP BY span{groups}", params


def span_reports(query: SpendQuery, spans: Sequence[Span], rows: list[Row]) -> list[SpendReport]:
    """Each span's totals-only report (its rows and total, ordered as a report's), from spans_sql's rows."""
    by_span = tagged(rows)
    return [
        sums_report(replace(query, start=start, end=end, percentiles=False), by_span.get(index, []))
        for index, (start, end) in enumerate(spans)
    ]


def spans_sqlite(
    conn: sqlite3.Connection, query: SpendQuery, spans: Sequence[Span], within: Within = ()
) -> list[SpendReport]:
    reports = []
    for part in chunks(spans):
        rows = [tuple(r) for r in conn.execute(*spans_sql(query, part, SQLITE, "sqlite", within))]
        reports += span_reports(query, part, rows)
    return reports


async def spans_postgres(
    conn: asyncpg.Connection, query: SpendQuery, spans: Sequence[Span], within: Within = ()
) -> list[SpendReport]:
    """On a connection of the store's read pool, where JIT is off: one plan of a scan or two per span
    sums past `jit_above_cost`, and JIT would compile every scan (7 s for a team's 60 buckets at 1M
    records, for a read of ~0.1 s)."""
    reports = []
    for part in chunks(spans):
        sql, params = spans_sql(query, part, POSTGRES, "postgres", within)
        reports += span_reports(query, part, [tuple(r) for r in await conn.fetch(sql, *params)])
    return reports
