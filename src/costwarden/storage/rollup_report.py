"""Spend reports read from rollups: whole days, hours and minutes from the cube that holds the
query's dimensions (domain/rollup.py), raw records only for the partial buckets at the edges.

Totals equal the raw ledger's exactly (sums of exact integers). Percentiles come from the merged
latency histograms: within 1 % of the nearest-rank value (see domain/latency_histogram.py). A
window holding no whole minute is read raw, percentiles exact.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from costwarden.domain import latency_histogram
from costwarden.domain.money import from_nanos, quantize, to_nanos
from costwarden.domain.report import SpendQuery, SpendReport
from costwarden.domain.rollup import CUBES, SUMS, Cube, Plan, cube_for, plan
from costwarden.storage.rollup_fold import DELTA
from costwarden.storage.spend_sql import POSTGRES, SQLITE, Dialect, assemble, percentiles_sql, totals_sql

if TYPE_CHECKING:  # the postgres extra: imported only where a PostgreSQL ledger is used
    import asyncpg

Statement = tuple[str, list[object]]
_CELL_SUMS = ", ".join(SUMS)
_SUMS = ", ".join(f"SUM({c})" for c in SUMS)
_WIDTH = len(SUMS)  # the counts, then the cost
# Histograms as JSON text, merged in Python: a folded cell's, and a pending cell's one bin.
_LATENCY = {"sqlite": "latency", "postgres": "latency::text"}
_PENDING_LATENCY = {
    "sqlite": "json_object(CAST(bin AS TEXT), requests)",
    "postgres": "json_build_object(bin, requests)::text",
}


@dataclass(frozen=True, slots=True)
class Reads:
    """The statements one report runs; `raw_totals` use the raw report's own SQL (spend_sql)."""

    rolled_totals: Statement
    rolled_bins: tuple[Statement, ...]  # none when the query asks for no percentiles
    raw_totals: tuple[Statement, ...]
    raw_latencies: tuple[Statement, ...]


def _filters(query: SpendQuery, dialect: Dialect, params: list[object]) -> list[str]:
    clauses = []
    for name, value in query.where:
        params.append(value)
        clauses.append(f"{name} = {dialect.placeholder(len(params))}")
    return clauses


def _where(query: SpendQuery, p: Plan, dialect: Dialect, params: list[object], pending: int | None) -> str:
    """The cells of the plan's whole buckets: folded ones at each span's grain or, with `pending`
    (a cube index), pending ones (at the cube's finest grain, inside any span)."""
    spans = []
    for grain, first, end in p.rolled:
        span = []
        if pending is None:
            params.append(grain)
            span.append(f"grain = {dialect.placeholder(len(params))}")
        if first is not None:
            params.append(first)
            span.append(f"bucket >= {dialect.placeholder(len(params))}")
        if end is not None:
            params.append(end)
            span.append(f"bucket < {dialect.placeholder(len(params))}")
        spans.append("(" + (" AND ".join(span) or "TRUE") + ")")
    clauses = ["(" + " OR ".join(spans) + ")", *_filters(query, dialect, params)]
    if pending is not None:
        params.append(pending)
        clauses.append(f"cube = {dialect.placeholder(len(params))}")
    return " WHERE " + " AND ".join(clauses)


def _cells(query: SpendQuery, cube: Cube, p: Plan, dialect: Dialect, columns: str, pending_columns: str) -> Statement:
    """`columns` of every folded cell the plan's whole buckets hold, then `pending_columns` of the
    pending ones: one statement, so a fold committing meanwhile is seen whole or not at all."""
    params: list[object] = []
    folded = f"SELECT {columns} FROM {cube.table}{_where(query, p, dialect, params, None)}"
    pending = f"SELECT {pending_columns} FROM {DELTA}{_where(query, p, dialect, params, CUBES.index(cube))}"
    return f"{folded} UNION ALL {pending}", params


def reads(query: SpendQuery, cube: Cube, p: Plan, dialect: Dialect, name: str) -> Reads:
    groups = query.group_by
    select = "".join(f"{g}, " for g in groups)
    group = f" GROUP BY {', '.join(groups)}" if groups else ""
    cells, params = _cells(query, cube, p, dialect, f"{select}{_CELL_SUMS}", f"{select}{_CELL_SUMS}")
    bins = _cells(query, cube, p, dialect, f"{select}{_LATENCY[name]}", f"{select}{_PENDING_LATENCY[name]}")
    raw_totals, raw_latencies = [], []
    for start, end in p.raw:
        window = SpendQuery(group_by=groups, start=start, end=end, where=query.where, percentiles=False)
        raw_totals.append(totals_sql(window, groups, dialect))
        latency_params: list[object] = [start, end]
        raw_where = [f"started_at >= {dialect.placeholder(1)}", f"started_at < {dialect.placeholder(2)}"]
        raw_where += _filters(query, dialect, latency_params)
        sql = f"SELECT {select}latency_ms FROM ledger WHERE {' AND '.join(raw_where)}"
        raw_latencies.append((sql, latency_params))
    return Reads(
        rolled_totals=(f"SELECT {select}{_SUMS} FROM ({cells}) AS cells{group}", params),
        rolled_bins=(bins,) if query.percentiles else (),
        raw_totals=tuple(raw_totals),
        raw_latencies=tuple(raw_latencies) if query.percentiles else (),
    )


Row = tuple[Any, ...]


def combine(
    query: SpendQuery,
    rolled_totals: list[Row],
    rolled_bins: list[list[Row]],
    raw_totals: list[list[Row]],
    raw_latencies: list[list[Row]],
    raw_cost_nanos: Callable[[object], int],
) -> SpendReport:
    """Add the rollup and raw parts group by group; percentiles from the merged histograms."""
    width = len(query.group_by)
    sums: dict[Row, list[int]] = {}
    bins: dict[Row, dict[str, int]] = {}  # bins keyed by their JSON text: no conversion per bin

    def add(group: Row, values: Row, cost: int) -> None:
        counts = _WIDTH - 1
        if not any(values[:counts]) and not cost:
            return  # the empty window's single row of an ungrouped raw total
        into = sums.setdefault(group, [0] * _WIDTH)
        for i in range(counts):
            into[i] += int(values[i] or 0)
        into[counts] += cost

    for row in rolled_totals:
        add(tuple(row[:width]), tuple(row[width:]), int(row[-1] or 0))
    for part in raw_totals:
        for row in part:
            add(tuple(row[:width]), tuple(row[width:]), raw_cost_nanos(row[-1]))
    for row in (row for part in rolled_bins for row in part):
        hist = bins.setdefault(row[:width], {})
        for key, count in orjson.loads(row[width]).items():
            hist[key] = hist.get(key, 0) + count
    for part in raw_latencies:
        for row in part:
            hist = bins.setdefault(tuple(row[:width]), {})
            key = str(latency_histogram.bin_of(float(row[width])))
            hist[key] = hist.get(key, 0) + 1

    def pct(hist: dict[str, int]) -> Row:
        if not query.percentiles:
            return (None, None)
        return (latency_histogram.percentile(hist, 0.5), latency_histogram.percentile(hist, 0.95))

    if width == 0:
        sums.setdefault((), [0] * _WIDTH)  # an ungrouped report has its one row, as on the raw path
    total_sums: list[int] = [0] * _WIDTH
    total_hist: dict[str, int] = {}
    for group, values in sums.items():
        total_sums = [a + b for a, b in zip(total_sums, values, strict=True)]
        for key, count in bins.get(group, {}).items():
            total_hist[key] = total_hist.get(key, 0) + count
    totals = [(*group, *values) for group, values in sums.items()]
    percentiles = [(*group, *pct(bins.get(group, {}))) for group in sums]
    report = assemble(query, totals, percentiles, tuple(total_sums), pct(total_hist), _usd)
    return replace(report, percentile_error=latency_histogram.RELATIVE_ERROR if query.percentiles else 0.0)


def _nanos(cost: object) -> int:
    return int(str(cost))


def _usd(nanos: object) -> Decimal:
    return from_nanos(int(nanos))  # type: ignore[call-overload]


def _postgres_usd(value: object) -> Decimal:
    return quantize(Decimal(str(value)))


def spend_sqlite(conn: sqlite3.Connection, query: SpendQuery, rollups: bool = True) -> SpendReport:
    """A report on the SQLite worker thread; `rollups=False` reads only raw records (the old path)."""
    cube = cube_for(query)
    p = plan(query.start, query.end, cube.grains)
    if not rollups or not p.rolled:
        groups = query.group_by
        totals = conn.execute(*totals_sql(query, groups, SQLITE)).fetchall()
        total = conn.execute(*totals_sql(query, (), SQLITE)).fetchone()
        if not query.percentiles:
            return assemble(query, totals, [], tuple(total), (None, None), _usd)
        pct = conn.execute(*percentiles_sql(query, groups, SQLITE)).fetchall()
        total_pct = conn.execute(*percentiles_sql(query, (), SQLITE)).fetchone()
        return assemble(query, totals, pct, tuple(total), tuple(total_pct), _usd)
    r = reads(query, cube, p, SQLITE, "sqlite")

    def run(s: Statement) -> list[Row]:
        return [tuple(row) for row in conn.execute(*s).fetchall()]

    return combine(
        query,
        run(r.rolled_totals),
        [run(s) for s in r.rolled_bins],
        [run(s) for s in r.raw_totals],
        [run(s) for s in r.raw_latencies],
        _nanos,
    )


async def spend_postgres(conn: asyncpg.Connection, query: SpendQuery, rollups: bool = True) -> SpendReport:
    """A report on one pooled connection; `rollups=False` reads only raw records (the old path)."""
    cube = cube_for(query)
    p = plan(query.start, query.end, cube.grains)
    if not rollups or not p.rolled:
        groups = query.group_by
        totals = [tuple(r) for r in await conn.fetch(*_args(totals_sql(query, groups, POSTGRES)))]
        total = tuple(await conn.fetchrow(*_args(totals_sql(query, (), POSTGRES))))
        if not query.percentiles:
            return assemble(query, totals, [], total, (None, None), _postgres_usd)
        pct = [tuple(r) for r in await conn.fetch(*_args(percentiles_sql(query, groups, POSTGRES)))]
        total_pct = tuple(await conn.fetchrow(*_args(percentiles_sql(query, (), POSTGRES))))
        return assemble(query, totals, pct, total, total_pct, _postgres_usd)
    r = reads(query, cube, p, POSTGRES, "postgres")

    async def run(s: Statement) -> list[Any]:
        return list(await conn.fetch(*_args(s)))

    fetched = (
        await run(r.rolled_totals),
        [await run(s) for s in r.rolled_bins],
        [await run(s) for s in r.raw_totals],
        [await run(s) for s in r.raw_latencies],
    )
    # Adding up thousands of cells and merging their histograms is Python CPU (~0.1-0.3 s for a
    # month at 1M records): in a worker thread, so the event loop keeps answering probes.
    return await asyncio.to_thread(_combine_rows, query, *fetched)


def _combine_rows(
    query: SpendQuery,
    rolled_totals: list[Any],
    rolled_bins: list[list[Any]],
    raw_totals: list[list[Any]],
    raw_latencies: list[list[Any]],
) -> SpendReport:
    def rows(records: list[Any]) -> list[Row]:
        return [tuple(row) for row in records]

    return combine(
        query,
        rows(rolled_totals),
        [rows(b) for b in rolled_bins],
        [rows(t) for t in raw_totals],
        [rows(latencies) for latencies in raw_latencies],
        lambda cost: to_nanos(Decimal(str(cost))),
    )


def _args(pair: Statement) -> tuple[Any, ...]:
    sql, params = pair
    return (sql, *params)
