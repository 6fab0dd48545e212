"""Spend reports read from rollups: whole days, hours and minutes from the cube that holds the
query's dimensions (domain/rollup.py), raw records only for the partial buckets at the edges.

Totals equal the raw ledger's exactly (sums of exact integers). Percentiles come from the merged
latency histograms: within 1 % of the nearest-rank value (see domain/latency_histogram.py). A
window holding no whole minute is read raw, percentiles exact.
"""

from __future__ import annotations

import asyncio
import sqlite3
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from itertools import repeat
from operator import add as add_int
from typing import TYPE_CHECKING, Any

import orjson

from costwarden.domain import latency_histogram
from costwarden.domain.money import from_nanos, quantize, to_nanos
from costwarden.domain.report import SpendQuery, SpendReport, SpendRow
from costwarden.domain.rollup import SUMS, UNIT_SUMS, Cube, Plan, cube_for, plan
from costwarden.storage.rollup_fold import DELTA
from costwarden.storage.rollup_write import PACKED_UNIT
from costwarden.storage.spend_sql import POSTGRES, SQLITE, Dialect, assemble, percentiles_sql, totals_sql

if TYPE_CHECKING:  # the postgres extra: imported only where a PostgreSQL ledger is used
    import asyncpg

Statement = tuple[str, list[object]]
_CELL_SUMS = ", ".join(SUMS)
_SUMS = ", ".join(f"SUM({c})" for c in SUMS)
SUMS_SQL = _SUMS  # the sums of `SUMS` over a union of `facts`
_WIDTH = len(SUMS)  # the counts, then the cost
# Histograms: on SQLite as JSON text merged in Python (a group's cells come back as one text, their
# objects joined by commas: one row and one parse per group); on PostgreSQL as packed NUMERICs
# (latency_histogram.pack, migration 0023) summed per group by the database, one number per group.
_LATENCY = {"sqlite": "latency", "postgres": "latency"}
_PENDING_LATENCY = {
    "sqlite": "COALESCE(latency, json_object(CAST(bin AS TEXT), requests))",  # a cell of several bins: 0025
    "postgres": f"requests * {PACKED_UNIT.format(bin='bin')}",
}
_JOIN_LATENCY = {"sqlite": "group_concat(latency, ',')", "postgres": "SUM(latency)::text"}  # text: no Decimal


def _joined_json(joined: object) -> array[int]:
    """A group's counts by bin from its cells' JSON objects joined by commas (SQLite)."""
    hist: dict[str, int] = {}  # bins keyed by their JSON text while adding: no conversion per bin
    for cell in orjson.loads(f"[{joined}]"):
        hist.update(zip(cell, map(add_int, map(hist.get, cell, repeat(0)), cell.values()), strict=True))
    return latency_histogram.counted(hist)


_GROUP_HISTOGRAM: dict[str, Callable[[object], array[int]]] = {
    "sqlite": _joined_json,
    "postgres": latency_histogram.unpack,
}


@dataclass(frozen=True, slots=True)
class Reads:
    """The statements one report runs; `raw_totals` use the raw report's own SQL (spend_sql).
    `rolled` sums the whole buckets' cells per group and, when the query asks for percentiles,
    joins their histograms' texts (one scan of the cells for both)."""

    rolled: Statement
    raw_totals: tuple[Statement, ...]
    raw_latencies: tuple[Statement, ...]


def _filters(query: SpendQuery, dialect: Dialect, params: list[object]) -> list[str]:
    clauses = []
    for name, value in query.where:
        params.append(value)
        clauses.append(f"{name} = {dialect.placeholder(len(params))}")
    return clauses


def _where(
    query: SpendQuery, p: Plan, dialect: Dialect, params: list[object], pending: int | None, within: tuple[str, ...]
) -> str:
    """The cells of the plan's whole buckets: folded ones at each span's grain or, with `pending`
    (a base cube index, Cube.pending), pending ones (at that cube's finest grain, which nests in
    every grain of the cubes reading them, inside any span). `within`: more clauses, whose
    parameters are in `params` already."""
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
    clauses = ["(" + " OR ".join(spans) + ")", *_filters(query, dialect, params), *within]
    if pending is not None:
        params.append(pending)
        clauses.append(f"cube = {dialect.placeholder(len(params))}")
    return " WHERE " + " AND ".join(clauses)


def _cells(
    query: SpendQuery,
    cube: Cube,
    p: Plan,
    dialect: Dialect,
    columns: str,
    pending_columns: str,
    params: list[object],
    within: tuple[str, ...] = (),
) -> str:
    """`columns` of every folded cell the plan's whole buckets hold, then `pending_columns` of the
    pending ones: one statement, so a fold committing meanwhile is seen whole or not at all. Its
    parameters are appended to `params` (numbered after those already there)."""
    folded = f"SELECT {columns} FROM {cube.table}{_where(query, p, dialect, params, None, within)}"
    pending = f"SELECT {pending_columns} FROM {DELTA}{_where(query, p, dialect, params, cube.pending, within)}"
    return f"{folded} UNION ALL {pending}"


def reads(query: SpendQuery, cube: Cube, p: Plan, dialect: Dialect, name: str) -> Reads:
    groups = query.group_by
    select = "".join(f"{g}, " for g in groups)
    group = f" GROUP BY {', '.join(groups)}" if groups else ""
    folded, pending, sums = f"{select}{_CELL_SUMS}", f"{select}{_CELL_SUMS}", _SUMS
    if query.percentiles:
        folded += f", {_LATENCY[name]} AS latency"
        pending += f", {_PENDING_LATENCY[name]}"
        sums += f", {_JOIN_LATENCY[name]}"
    params: list[object] = []
    cells = _cells(query, cube, p, dialect, folded, pending, params)
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
        rolled=(f"SELECT {select}{sums} FROM ({cells}) AS cells{group}", params),
        raw_totals=tuple(raw_totals),
        raw_latencies=tuple(raw_latencies) if query.percentiles else (),
    )


Row = tuple[Any, ...]


def combine(
    query: SpendQuery,
    rolled: list[Row],
    raw_totals: list[list[Row]],
    raw_latencies: list[list[Row]],
    raw_cost_nanos: Callable[[object], int],
    name: str,
) -> SpendReport:
    """Add the rollup and raw parts group by group; percentiles from the merged histograms (`name`:
    the dialect, which says how a group's histogram comes back)."""
    width = len(query.group_by)
    sums: dict[Row, list[int]] = {}
    bins: dict[Row, array[int]] = {}  # counts by bin (arrays: nothing the garbage collector walks)
    group_histogram = _GROUP_HISTOGRAM[name]

    def add(group: Row, values: Row, cost: int) -> None:
        counts = _WIDTH - 1
        if not any(values[:counts]) and not cost:
            return  # the empty window's single row of an ungrouped raw total
        into = sums.setdefault(group, [0] * _WIDTH)
        for i in range(counts):
            into[i] += int(values[i] or 0)
        into[counts] += cost

    end = width + _WIDTH  # rolled rows: groups..., SUMS, then the joined histograms with percentiles
    for row in rolled:
        group = tuple(row[:width])
        add(group, tuple(row[width:end]), int(row[end - 1] or 0))
        if query.percentiles and row[end] is not None:  # None: an ungrouped report over no cells
            bins[group] = group_histogram(row[end])  # the rolled rows come first, one per group
    for part in raw_totals:
        for row in part:
            add(tuple(row[:width]), tuple(row[width:]), raw_cost_nanos(row[-1]))
    for part in raw_latencies:
        for row in part:
            group = tuple(row[:width])
            hist = bins.get(group)
            if hist is None:
                hist = bins[group] = latency_histogram.zeros(0)
            index = latency_histogram.bin_of(float(row[width]))
            if index >= len(hist):
                hist.extend(repeat(0, index + 1 - len(hist)))
            hist[index] += 1

    def pct(hist: Sequence[int]) -> Row:
        if not query.percentiles:
            return (None, None)
        return latency_histogram.count_percentiles(hist, (0.5, 0.95))

    if width == 0:
        sums.setdefault((), [0] * _WIDTH)  # an ungrouped report has its one row, as on the raw path
    total_sums: list[int] = [0] * _WIDTH
    for values in sums.values():
        total_sums = [a + b for a, b in zip(total_sums, values, strict=True)]
    none = latency_histogram.zeros(0)
    total_hist = latency_histogram.total_counts(bins.get(group, none) for group in sums)
    totals = [(*group, *values) for group, values in sums.items()]
    percentiles = [(*group, *pct(bins.get(group, none))) for group in sums]
    report = assemble(query, totals, percentiles, tuple(total_sums), pct(total_hist), _usd)
    return replace(report, percentile_error=latency_histogram.RELATIVE_ERROR if query.percentiles else 0.0)


# Top groups: the whole-bucket cells, the pending cells and the raw records of the partial buckets
# as one union, summed per group and ranked in SQL, so only `n` rows come back (ties as a report
# orders them: more requests first, then by group).
_RAW_SUMS = (
    "1 AS requests, CASE WHEN outcome IN ('served', 'queued') THEN 0 ELSE 1 END AS errors, "  # record.NOT_ERRORS
    "input_tokens, output_tokens, cached_tokens, items, " + ", ".join(UNIT_SUMS) + ", {cost} AS cost_nanos"
)
_RAW_COST = {"sqlite": "cost_nanos", "postgres": "cost_usd * 1000000000"}
_TIE_ORDER = {"sqlite": "", "postgres": ' COLLATE "C"'}


def facts(
    query: SpendQuery,
    p: Plan,
    dialect: Dialect,
    name: str,
    select: str,
    params: list[object],
    within: tuple[str, ...] = (),
) -> list[str]:
    """SELECTs of `select` (columns, each followed by a comma), then the sums of `SUMS` (cost in
    nano-dollars), of the facts of the window planned as `p`: the cells of its whole buckets
    (folded and pending, of the query's cube) and the raw records of its partial buckets; to be
    joined by UNION ALL. Their parameters are appended to `params`. `within`: more filter
    clauses on the dimensions, whose parameters are in `params` already."""
    parts: list[str] = []
    if p.rolled:
        columns = f"{select}{_CELL_SUMS}"
        parts.append(_cells(query, cube_for(query), p, dialect, columns, columns, params, within))
    for start, end in p.raw:
        parts.append(f"SELECT {select}{_raw(query, start, end, dialect, name, params, within)}")
    return parts


def _raw(
    query: SpendQuery,
    start: float | None,
    end: float | None,
    dialect: Dialect,
    name: str,
    params: list[object],
    within: tuple[str, ...],
) -> str:
    """The sums of `SUMS` of the raw records in [start, end), `FROM` and `WHERE` included."""
    where = []
    for bound, op in ((start, ">="), (end, "<")):
        if bound is not None:
            params.append(bound)
            where.append(f"started_at {op} {dialect.placeholder(len(params))}")
    where += [*_filters(query, dialect, params), *within]
    raw = _RAW_SUMS.format(cost=_RAW_COST[name])
    return f"{raw} FROM ledger" + (f" WHERE {' AND '.join(where)}" if where else "")


RawPart = tuple[int, float | None, float | None]  # a tag (a span's index) and [start, end)


def tagged_raw(
    query: SpendQuery,
    run: list[RawPart],
    dialect: Dialect,
    name: str,
    groups: str,
    params: list[object],
    within: tuple[str, ...] = (),
) -> str:
    """One SELECT of `span`, `groups` (each after a comma), then the sums of `SUMS`, of the raw
    records of consecutive parts (each one's end the next one's start), each record tagged with
    its part's tag: one range scan for them all (a key budget's 60 buckets are all raw records,
    the key cubes holding days), not one per part."""
    cases = []
    for tag, _, end in run[:-1]:
        params.append(end)
        cases.append(f"WHEN started_at < {dialect.placeholder(len(params))} THEN {tag}")
    span = f"CASE {' '.join(cases)} ELSE {run[-1][0]} END" if cases else str(run[-1][0])
    return f"SELECT {span} AS span{groups}, {_raw(query, run[0][1], run[-1][2], dialect, name, params, within)}"


def top_sql(query: SpendQuery, n: int, dialect: Dialect, name: str) -> Statement:
    """The `n` costliest groups of `query` (grouped by at least one dimension): groups..., then the
    sums of `SUMS` (cost in nano-dollars), costliest first."""
    groups = query.group_by
    assert groups and n > 0
    cube = cube_for(query)
    p = plan(query.start, query.end, cube.grains)
    select = "".join(f"{g}, " for g in groups)
    params: list[object] = []
    parts = facts(query, p, dialect, name, select, params)
    params.append(n)
    ties = ", ".join(f"COALESCE({g}, ''){_TIE_ORDER[name]}" for g in groups)
    sql = (
        f"SELECT {select}{_SUMS} FROM ({' UNION ALL '.join(parts)}) AS facts GROUP BY {', '.join(groups)} "
        f"ORDER BY SUM(cost_nanos) DESC, SUM(requests) DESC, {ties} LIMIT {dialect.placeholder(len(params))}"
    )
    return sql, params


def series_sql(query: SpendQuery, step: int, dialect: Dialect) -> Statement | None:
    """Totals per whole `step` bucket and group over [start, end) (both on the step's edges): bucket,
    groups..., the sums of `SUMS`. From the cells at that grain and the pending cells (at the cube's
    finest grain, which nests in it), in one statement; None when the cube has no such grain."""
    cube = cube_for(query)
    if step not in cube.grains or query.start is None or query.end is None:
        return None
    groups = "".join(f", {g}" for g in query.group_by)
    params: list[object] = [step, int(query.start), int(query.end)]
    mark = dialect.placeholder
    folded = (
        f"SELECT bucket{groups}, {_CELL_SUMS} FROM {cube.table} WHERE grain = {mark(1)} "
        f"AND bucket >= {mark(2)} AND bucket < {mark(3)}"
    )
    folded += "".join(f" AND {c}" for c in _filters(query, dialect, params))
    params += [cube.pending, int(query.start), int(query.end)]
    n = len(params)
    pending = (
        f"SELECT bucket - ((bucket % {step}) + {step}) % {step} AS bucket{groups}, {_CELL_SUMS} FROM {DELTA} "
        f"WHERE cube = {mark(n - 2)} AND bucket >= {mark(n - 1)} AND bucket < {mark(n)}"
    )
    pending += "".join(f" AND {c}" for c in _filters(query, dialect, params))
    return (
        f"SELECT bucket{groups}, {_SUMS} FROM ({folded} UNION ALL {pending}) AS cells GROUP BY bucket{groups}",
        params,
    )


def series_reports(query: SpendQuery, step: int, rows: list[Row]) -> dict[int, SpendReport]:
    """A totals-only report per whole bucket of [start, end) (empty buckets too), from series_sql's
    rows (every sum an exact integer: cost in nano-dollars). Rows are built directly (a month of
    500 teams is 15,000 of them), ordered as `assemble` orders a report's: sorted and totalled on
    the integers, each row converted once."""
    assert query.start is not None and query.end is not None
    by_bucket = tagged(rows)
    return {
        bucket: sums_report(
            replace(query, start=float(bucket), end=float(bucket + step), percentiles=False), by_bucket.get(bucket, [])
        )
        for bucket in range(int(query.start), int(query.end), step)
    }


def tagged(rows: list[Row]) -> dict[int, list[Row]]:
    """Rows of (tag, groups..., SUMS) by their integer tag (a bucket's start, a span's index)."""
    by_tag: dict[int, list[Row]] = {}
    for row in rows:
        by_tag.setdefault(int(row[0]), []).append(row)
    return by_tag


def sums_report(window: SpendQuery, found: list[Row]) -> SpendReport:
    """A totals-only report of `window` from its rows of (tag, groups..., the integer sums of `SUMS`)."""
    width = len(window.group_by)
    found.sort(key=_integer_order(width))
    sums = [int(sum(c)) for c in list(zip(*found, strict=True))[width + 1 :]] if found else [0] * len(SUMS)
    total = _series_row((), sums)
    report_rows = tuple(_series_row(r[1 : width + 1], r[width + 1 :]) for r in found) if width else (total,)
    return SpendReport(window, report_rows, total)


def _integer_order(width: int) -> Callable[[Row], tuple[int, int, tuple[str, ...]]]:
    """A series row's place in a report (costliest, then most requests, then by group), from its
    integer sums (bucket, groups..., SUMS: requests first, cost last)."""

    def key(row: Row) -> tuple[int, int, tuple[str, ...]]:
        return (-int(row[-1]), -int(row[width + 1]), tuple(g or "" for g in row[1 : width + 1]))

    return key


_ROW_SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cached_tokens", "items", *UNIT_SUMS)


def _sums_row(group: Row, values: Row, to_usd: Callable[[object], Decimal]) -> SpendRow:
    """A row from a group and `SUMS` in their order (the counts, the units, then the cost)."""
    counts = (int(v or 0) for v in values[: len(_ROW_SUMS)])
    dims = tuple(None if g is None else str(g) for g in group)
    return SpendRow(dims, cost_usd=to_usd(values[len(_ROW_SUMS)] or 0), **dict(zip(_ROW_SUMS, counts, strict=True)))


assert SUMS.index("cost_nanos") == 11 and len(SUMS) == 12 and SUMS[:-1] == _ROW_SUMS  # _series_row's positions


def _series_row(group: Row, v: Row | list[int]) -> SpendRow:
    """A row from a group and its integer `SUMS` (built positionally: 15,000 of them a month)."""
    cost = Decimal(int(v[11])).scaleb(-9)
    g = tuple(None if x is None else str(x) for x in group)
    i = int
    return SpendRow(g, i(v[0]), i(v[1]), i(v[2]), i(v[3]), i(v[4]), i(v[5]), cost, None, None,
                    i(v[6]), i(v[7]), i(v[8]), i(v[9]), i(v[10]))  # fmt: skip


def top_rows(query: SpendQuery, rows: list[Row], to_usd: Callable[[object], Decimal]) -> list[SpendRow]:
    width = len(query.group_by)
    return [_sums_row(row[:width], row[width:], to_usd) for row in rows]


def series_sqlite(conn: sqlite3.Connection, query: SpendQuery, step: int) -> dict[int, SpendReport] | None:
    statement = series_sql(query, step, SQLITE)
    if statement is None:
        return None
    return series_reports(query, step, [tuple(r) for r in conn.execute(*statement)])


async def series_postgres(conn: asyncpg.Connection, query: SpendQuery, step: int) -> dict[int, SpendReport] | None:
    statement = series_sql(query, step, POSTGRES)
    if statement is None:
        return None
    return series_reports(query, step, [tuple(r) for r in await conn.fetch(*_args(statement))])


def top_sqlite(conn: sqlite3.Connection, query: SpendQuery, n: int) -> list[SpendRow]:
    return top_rows(query, [tuple(r) for r in conn.execute(*top_sql(query, n, SQLITE, "sqlite"))], _usd)


async def top_postgres(conn: asyncpg.Connection, query: SpendQuery, n: int) -> list[SpendRow]:
    rows = [tuple(r) for r in await conn.fetch(*_args(top_sql(query, n, POSTGRES, "postgres")))]
    return top_rows(query, rows, lambda cost: from_nanos(int(cost)))  # type: ignore[call-overload]


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
        run(r.rolled),
        [run(s) for s in r.raw_totals],
        [run(s) for s in r.raw_latencies],
        _nanos,
        "sqlite",
    )


async def spend_postgres(conn: asyncpg.Connection, query: SpendQuery, rollups: bool = True) -> SpendReport:
    """A report on one connection of the store's read pool (JIT off); `rollups=False` reads only raw
    records (the old path)."""
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

    # On the store's read pool, where JIT is off: a month's cells cost past `jit_above_cost`, and
    # compiling the statement took ~0.18 s of a 0.5 s read at 3M records, for no faster execution.
    fetched = (
        await run(r.rolled),
        [await run(s) for s in r.raw_totals],
        [await run(s) for s in r.raw_latencies],
    )
    # Adding up thousands of cells and merging their histograms is Python CPU (~0.1-0.3 s for a
    # month at 1M records): in a worker thread, so the event loop keeps answering probes.
    return await asyncio.to_thread(_combine_rows, query, *fetched)


def _combine_rows(
    query: SpendQuery,
    rolled: list[Any],
    raw_totals: list[list[Any]],
    raw_latencies: list[list[Any]],
) -> SpendReport:
    def rows(records: list[Any]) -> list[Row]:
        return [tuple(row) for row in records]

    return combine(
        query,
        rows(rolled),
        [rows(t) for t in raw_totals],
        [rows(latencies) for latencies in raw_latencies],
        lambda cost: to_nanos(Decimal(str(cost))),
        "postgres",
    )


def _args(pair: Statement) -> tuple[Any, ...]:
    sql, params = pair
    return (sql, *params)
