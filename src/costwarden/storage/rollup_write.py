"""Ledger inserts that tell which rows they stored, and the backfill of a ledger that predates
the rollups (once, by the migration that creates them, in SQL).

Only rows the insert stored count (it is idempotent on request_id), so a replayed spool or a
record written twice adds nothing to the rollups: the store collects the pending rollup cells
of exactly those rows (storage/rollup_fold.py). Buckets are exact at their edges, as in
domain/rollup.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from costwarden.domain import latency_histogram
from costwarden.domain.latency_histogram import CEILING_MS, FIELD_DIGITS, FLOOR_MS, LOG_GAMMA
from costwarden.domain.rollup import (
    BASE_CUBES,
    BASE_SUMS,
    CUBES,
    DAY,
    DERIVED,
    ORG,
    QUARTER_DAY,
    SUMS,
    TEAMS,
    WEEK,
    Cube,
)

if TYPE_CHECKING:  # the postgres extra: imported only where a PostgreSQL ledger is used
    import asyncpg

MIGRATION = 6  # 0006_rollups: the backfill runs after it, in the same transaction
WEEKS_MIGRATION = 12  # 0012_rollup_delta: week cells are added up from day cells after it
DERIVED_MIGRATION = 20  # 0020_narrow_rollups: the derived cubes are added up from their source cubes' cells
TEAM_OUTCOME_MIGRATION = 22  # 0022_team_outcome: the team cube, with the outcome, added up again from `rollup`
QUARTER_MIGRATION = 23  # 0023_rollup_quarter_days: 6-hour cells are added up from hour cells after it
# The derived cubes each migration creates or reshapes, to be added up from their source cubes right
# after it: 0020's team cube has no outcome column until 0022 (which always runs after it) adds it.
DERIVES: dict[int, tuple[Cube, ...]] = {
    DERIVED_MIGRATION: tuple(cube for cube in DERIVED if cube is not TEAMS),
    TEAM_OUTCOME_MIGRATION: (TEAMS,),
}
_SUMS = BASE_SUMS  # what the rollups held when migrations 6 and 12 ran (the units came with 0017)


@dataclass(frozen=True, slots=True)
class RollupDialect:
    floor: str  # SQL turning `started_at / grain` into an integer (any rounding: _bucket settles it)
    latency_bin: str  # the histogram bin of latency_ms (domain/latency_histogram.py)
    cost_nanos: str  # a row's cost in nano-dollars
    dim_key: str  # canonical text of the dimension values, `{dims}` filled in
    histogram: str  # aggregate of the facts' (bin, requests) into one histogram
    merge: str  # two stored histograms ({old}, {new}) merged
    empty: str  # an empty histogram (the cells of a cube without latency)
    by_bin: bool = False  # the facts summed per bin first, `histogram` aggregating (bin, n) rows


SQLITE_ROLLUP = RollupDialect(
    floor="CAST(started_at / {grain} AS INTEGER)",
    latency_bin="cw_bin(latency_ms)",
    cost_nanos="cost_nanos",
    dim_key="json_array({dims})",
    histogram="cw_hist(bin, requests)",  # one GROUP BY with a histogram aggregate: measured 40 % faster than two
    merge="cw_hist_merge({old}, {new})",
    empty="'{}'",
)
# SQLite's fold reads pending cells that may hold several bins as a histogram (`latency`, migration 0025).
SQLITE_PENDING_ROLLUP = replace(SQLITE_ROLLUP, histogram="cw_hist(bin, requests, latency)")
# PostgreSQL's histograms are packed NUMERICs (latency_histogram.pack, migration 0023): bin i counts
# 10**(12 i), so a sum of histograms is a SUM and a merge is `+`.
PACKED_UNIT = f"('1e' || {FIELD_DIGITS} * ({{bin}}))::numeric"  # one record in bin {bin} (~3x cheaper than power)
POSTGRES_ROLLUP = RollupDialect(
    floor="CAST(FLOOR(started_at / {grain}) AS BIGINT)",
    latency_bin=(
        f"CASE WHEN latency_ms > {FLOOR_MS!r} THEN CAST(GREATEST(1, CEIL(LN(LEAST(latency_ms, {CEILING_MS!r}) "
        f"/ {FLOOR_MS!r}) / {LOG_GAMMA!r})) AS INTEGER) ELSE 0 END"
    ),
    cost_nanos="cost_usd * 1000000000",
    dim_key="json_build_array({dims})::text",
    histogram=f"SUM(requests * {PACKED_UNIT.format(bin='bin')})",
    merge="{old} + {new}",
    empty="0",
)
# Facts that are cells already, each with its packed histogram (`latency`): a fold's pending cells
# added up once per cell (storage/rollup_fold.py), so a grain adds their histograms, pairwise
# (migration 0024's aggregate: SUM sets up every digit up to the highest bin's once per group).
HIST_ADD = "costwarden_hist_add({})"
POSTGRES_CELLS = replace(POSTGRES_ROLLUP, histogram=HIST_ADD.format("latency"))
# The same before migration 0023: histograms as `jsonb` objects {"bin": count}; what the backfills of
# the migrations before it (0006, 0012, 0020) write, as they run on a ledger upgraded from before them.
POSTGRES_JSON_ROLLUP = replace(
    POSTGRES_ROLLUP,
    histogram="jsonb_object_agg(bin::text, n)",
    merge="costwarden_hist_merge({old}, {new})",
    empty="'{}'::jsonb",
    by_bin=True,
)


def _bucket(grain: int, d: RollupDialect) -> str:
    """Exact bucket start: the division may round across an edge, so settle it by comparison."""
    b0 = f"({d.floor.format(grain=grain)} * {grain})"
    return (
        f"CASE WHEN {b0} > started_at THEN {b0} - {grain} "
        f"WHEN {b0} + {grain} <= started_at THEN {b0} + {grain} ELSE {b0} END"
    )


def _counts(sums: tuple[str, ...]) -> tuple[str, ...]:
    """The summed counts of `sums`: all but requests, errors (first) and the cost (last)."""
    return sums[2:-1]


def ledger_facts(grain: int, dims: str, source: str, d: RollupDialect, sums: tuple[str, ...] = SUMS) -> str:
    """One fact per ledger row of `source`: its bucket at `grain`, dimensions, bin, sums."""
    return (
        f"SELECT {_bucket(grain, d)} AS bucket, {dims}, {d.latency_bin} AS bin, 1 AS requests, "
        f"CASE WHEN outcome IN ('served', 'queued') THEN 0 ELSE 1 END AS error, {', '.join(_counts(sums))}, "
        f"{d.cost_nanos} AS cost FROM {source}"
    )


def upsert_sql(
    cube: Cube, grain: int, facts: str, d: RollupDialect, sums: tuple[str, ...] = SUMS, grouped: bool = False
) -> str:
    """Add `facts` (bucket, the cube's dimensions, bin, requests, error, the counts of `sums`,
    cost) to `cube` at `grain`, one statement. `grouped`: the facts are the cells at `grain`
    already, each with its histogram as `latency` (no bin), and are upserted as they are."""
    dims = ", ".join(cube.dimensions)
    counts = _counts(sums)
    if grouped:
        source, requests, histogram = f"({facts}) AS facts", "requests", "latency" if cube.latency else d.empty
    elif not cube.latency:  # no histogram: the bins add up in one GROUP BY
        source, requests, histogram = f"({facts}) AS facts", "SUM(requests)", d.empty
    elif d.by_bin:
        summed = "".join(f"SUM({c}) AS {c}, " for c in counts)
        source = (
            f"(SELECT bucket, {dims}, bin, SUM(requests) AS n, SUM(error) AS error, {summed}"
            f"SUM(cost) AS cost FROM ({facts}) AS facts GROUP BY bucket, {dims}, bin) AS bins"
        )
        requests, histogram = "SUM(n)", d.histogram
    else:
        source, requests, histogram = f"({facts}) AS facts", "SUM(requests)", d.histogram
    t = cube.table
    updates = ", ".join(f"{c} = {t}.{c} + excluded.{c}" for c in sums)
    if cube.latency:
        updates += ", latency = " + d.merge.format(old=f"{t}.latency", new="excluded.latency")
    if grouped:
        values, group = f"{requests}, error, {''.join(f'{c}, ' for c in counts)}cost, {histogram}", ""
    else:
        totals = "".join(f"SUM({c}), " for c in counts)
        values, group = f"{requests}, SUM(error), {totals}SUM(cost), {histogram}", f"GROUP BY bucket, {dims} "
    return (
        f"INSERT INTO {t} (grain, bucket, dim_key, {dims}, {', '.join(sums)}, latency) "
        f"SELECT {grain}, bucket, {d.dim_key.format(dims=dims)}, {dims}, {values} FROM {source} WHERE true "
        f"{group}ORDER BY bucket, 3 "  # one lock order for racing writers
        f"ON CONFLICT (grain, bucket, dim_key) DO UPDATE SET {updates}"
    )


# SQLite: on the store's worker thread, inside the write's BEGIN IMMEDIATE transaction. New rows
# get rowids above the largest one before the insert, and the write lock keeps other writers out.


def _backfill_sql(cube: Cube, grain: int, d: RollupDialect) -> str:
    """The backfill of `cube` at `grain` from the whole ledger (the sums of migration 6)."""
    return upsert_sql(cube, grain, ledger_facts(grain, ", ".join(cube.dimensions), "ledger", d, _SUMS), d, _SUMS)


_SQLITE_UPSERTS = tuple(_backfill_sql(cube, grain, SQLITE_ROLLUP) for cube in BASE_CUBES for grain in cube.grains)


def mark_sqlite(conn: sqlite3.Connection) -> int:
    """The largest rowid of the ledger before an insert: the rows above it are the new ones."""
    return int(conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM ledger").fetchone()[0])


def stored_sqlite(conn: sqlite3.Connection, mark: int) -> set[str]:
    """The request ids of the rows above `mark`."""
    return {row[0] for row in conn.execute("SELECT request_id FROM ledger WHERE rowid > ?", (mark,))}


def _coarser_sql(grain: int, histogram_sum: str, sums: tuple[str, ...]) -> str:
    """Org cube cells of `grain`, added up from its folded cells of the next finer grain."""
    dims = ", ".join(ORG.dimensions)
    finer = max(g for g in ORG.grains if g < grain and grain % g == 0)
    bucket = f"bucket - ((bucket % {grain}) + {grain}) % {grain}"
    totals = ", ".join(f"SUM({c})" for c in sums)
    return (
        f"INSERT INTO rollup (grain, bucket, dim_key, {dims}, {', '.join(sums)}, latency) "
        f"SELECT {grain}, {bucket} AS b, dim_key, {dims}, {totals}, {histogram_sum} FROM rollup "
        f"WHERE grain = {finer} GROUP BY b, dim_key, {dims}"
    )


def _weeks_sqlite() -> str:
    """Week cells of the org cube, added up from its day cells (a ledger rolled up before weeks)."""
    return _coarser_sql(WEEK, "cw_hist_sum(latency)", _SUMS)


def add_quarter_days_sqlite(conn: sqlite3.Connection) -> None:
    """The org cube's 6-hour cells from its hour cells (migration 0023 removed any before)."""
    register_sqlite(conn)
    conn.execute(_coarser_sql(QUARTER_DAY, "cw_hist_sum(latency)", SUMS))


async def add_quarter_days_postgres(conn: asyncpg.Connection) -> None:
    """The same on PostgreSQL, histograms packed (the migration's transaction; folders wait)."""
    await conn.execute("LOCK TABLE rollup IN SHARE MODE")
    await conn.execute(_coarser_sql(QUARTER_DAY, "SUM(latency)", SUMS))


class _Histogram:
    """SQLite aggregate `cw_hist(bin, count)`: the encoded histogram of a group's bins."""

    def __init__(self) -> None:
        self.counts: latency_histogram.Histogram = {}

    def step(self, index: int, count: int) -> None:
        self.counts[index] = self.counts.get(index, 0) + count

    def finalize(self) -> str:
        return latency_histogram.encode(self.counts)


class _CellHistogram(_Histogram):
    """SQLite aggregate `cw_hist(bin, count, latency)`: the same over pending cells, each of one bin
    or, with `latency`, of that histogram's bins (migration 0025)."""

    def step(self, index: int, count: int, latency: str | None = None) -> None:
        if latency is None:
            self.counts[index] = self.counts.get(index, 0) + count
            return
        for at, n in latency_histogram.decode(latency).items():
            self.counts[at] = self.counts.get(at, 0) + n


class _HistogramSum:
    """SQLite aggregate `cw_hist_sum(latency)`: the merged histogram of a group's histograms."""

    def __init__(self) -> None:
        self.merged = "{}"

    def step(self, text: str) -> None:
        self.merged = latency_histogram.merge_text(self.merged, text)

    def finalize(self) -> str:
        return self.merged


def add_weeks_sqlite(conn: sqlite3.Connection) -> None:
    conn.execute(_weeks_sqlite())


def register_sqlite(conn: sqlite3.Connection) -> None:
    """The functions the rollup SQL calls, on one connection."""
    conn.create_function("cw_bin", 1, latency_histogram.bin_of, deterministic=True)
    conn.create_function("cw_hist_merge", 2, latency_histogram.merge_text, deterministic=True)
    conn.create_aggregate("cw_hist", 2, _Histogram)  # type: ignore[arg-type]  # typeshed: finalize() -> int only
    conn.create_aggregate("cw_hist", 3, _CellHistogram)  # type: ignore[arg-type]
    conn.create_aggregate("cw_hist_sum", 1, _HistogramSum)  # type: ignore[arg-type]


def backfill_sqlite(conn: sqlite3.Connection) -> None:
    """Roll up every record already in the ledger (in the migration's transaction); pending cells,
    if a later migration made any, are in the ledger too, so they go, and the derived cubes, if a
    later migration made them, are added up again from the base cubes."""
    register_sqlite(conn)
    for sql in _SQLITE_UPSERTS:
        conn.execute(sql)
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'rollup_delta'").fetchone():
        conn.execute("DELETE FROM rollup_delta")
    if conn.execute(f"SELECT 1 FROM sqlite_master WHERE name = '{DERIVED[0].table}'").fetchone():
        derive_sqlite(conn, _SUMS)


def _source_grain(cube: Cube, grain: int) -> int:
    """The coarsest grain of the cube's source cube that nests in `grain`."""
    return max(g for g in CUBES[cube.pending].grains if grain % g == 0)


def _derived_sql(cube: Cube, grain: int, sums: tuple[str, ...], d: RollupDialect, histogram_sum: str) -> str:
    """A derived cube's cells of `grain`, added up from its source cube's folded cells (histograms
    merged by the aggregate `histogram_sum`: SQLite's Python one, or a SUM of packed NUMERICs)."""
    dims = ", ".join(cube.dimensions)
    sg = _source_grain(cube, grain)
    bucket = "bucket" if sg == grain else f"bucket - ((bucket % {grain}) + {grain}) % {grain}"
    totals = ", ".join(f"SUM({c})" for c in sums)
    return (
        f"INSERT INTO {cube.table} (grain, bucket, dim_key, {dims}, {', '.join(sums)}, latency) "
        f"SELECT {grain}, {bucket} AS b, {d.dim_key.format(dims=dims)}, {dims}, {totals}, "
        f"{histogram_sum if cube.latency else d.empty} FROM {CUBES[cube.pending].table} "
        f"WHERE grain = {sg} GROUP BY b, {dims}"
    )


def derive_sqlite(conn: sqlite3.Connection, sums: tuple[str, ...] = SUMS, cubes: tuple[Cube, ...] = DERIVED) -> None:
    """Each derived cube's cells, added up anew from its source cube's folded cells (in the
    migration's transaction; pending cells are read by both, so they stay)."""
    register_sqlite(conn)
    for cube in cubes:
        conn.execute(f"DELETE FROM {cube.table}")
        for grain in cube.grains:
            conn.execute(_derived_sql(cube, grain, sums, SQLITE_ROLLUP, "cw_hist_sum(latency)"))


# PostgreSQL: the batch is COPYed into a temporary staging table, then one statement merges it
# into the ledger, idempotent on request_id, and says which rows it stored when not all of them.

STAGE = "ledger_stage"


def stage_postgres(columns: Sequence[tuple[str, str]]) -> str:
    """The session's staging table: the ledger's columns (no constraints: the merge checks);
    emptied by every commit and rollback, so no batch sees another's rows."""
    cols = ", ".join(f"{name} {sql_type}" for name, sql_type in columns)
    return f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} ({cols}) ON COMMIT DELETE ROWS"


def merge_postgres(ledger_columns: Sequence[str], conflict: str = "request_id") -> str:
    """Move the staged rows into the ledger; returns how many it stored and, when that is fewer
    than $1 (the staged rows), their request ids. The staged request ids are distinct. `conflict`:
    the ledger's primary key (a partitioned one holds started_at too)."""
    cols = ", ".join(ledger_columns)
    insert = (
        f"INSERT INTO ledger ({cols}) SELECT {cols} FROM {STAGE} "
        f"ON CONFLICT ({conflict}) DO NOTHING RETURNING request_id"
    )
    return (
        f"WITH stored AS ({insert}) SELECT COUNT(*) AS n, "
        "CASE WHEN COUNT(*) < $1 THEN COALESCE(array_agg(request_id), '{}') END AS ids FROM stored"
    )


async def backfill_postgres(conn: asyncpg.Connection, d: RollupDialect = POSTGRES_JSON_ROLLUP) -> None:
    """Roll up every record already in the ledger; the caller holds the migration transaction.
    Pending cells, if a later migration made any, are in the ledger too, so they go. `d`: the
    histograms' form, `jsonb` when migration 0006 runs; packed (POSTGRES_ROLLUP) on a ledger past
    0023 (bench/scale.py's `--fill copy`)."""
    await conn.execute("LOCK TABLE ledger IN SHARE MODE")  # writers wait until the backfill commits
    for cube in BASE_CUBES:
        for grain in cube.grains:
            await conn.execute(_backfill_sql(cube, grain, d))
    if await conn.fetchval("SELECT to_regclass('rollup_delta') IS NOT NULL"):
        await conn.execute("DELETE FROM rollup_delta")
    if await conn.fetchval(f"SELECT to_regclass('{DERIVED[0].table}') IS NOT NULL"):
        await derive_postgres(conn, _SUMS, d)


def _derive_postgres(cube: Cube, grain: int, sums: tuple[str, ...]) -> str:
    dims = ", ".join(cube.dimensions)
    sg = _source_grain(cube, grain)
    bucket = "bucket" if sg == grain else f"bucket - ((bucket % {grain}) + {grain}) % {grain}"
    summed = ", ".join(f"SUM({c}) AS {c}" for c in sums)
    dim_key = POSTGRES_ROLLUP.dim_key.format(dims=dims)
    return (
        f"WITH src AS (SELECT {bucket} AS b, {dim_key} AS dk, * FROM {CUBES[cube.pending].table} WHERE grain = {sg}), "
        "bins AS (SELECT b, dk, j.key, SUM(j.value::bigint) AS n "
        f"FROM src, jsonb_each_text(src.latency) AS j WHERE {cube.latency} GROUP BY b, dk, j.key), "
        "hists AS (SELECT b, dk, jsonb_object_agg(key, n) AS latency FROM bins GROUP BY b, dk), "
        f"cells AS (SELECT b, dk, {dims}, {summed} FROM src GROUP BY b, dk, {dims}) "
        f"INSERT INTO {cube.table} (grain, bucket, dim_key, {dims}, {', '.join(sums)}, latency) "
        f"SELECT {grain}, b, dk, {dims}, {', '.join(sums)}, COALESCE(latency, '{{}}') "
        "FROM cells LEFT JOIN hists USING (b, dk)"
    )


async def derive_postgres(
    conn: asyncpg.Connection,
    sums: tuple[str, ...] = SUMS,
    d: RollupDialect = POSTGRES_JSON_ROLLUP,
    cubes: tuple[Cube, ...] = DERIVED,
) -> None:
    """Each derived cube's cells, added up anew from its source cube's folded cells; the caller
    holds the migration transaction (folders wait: the source cubes are locked). `d`: the
    histograms' form, `jsonb` when migrations 0020 and 0022 run (before 0023 packs them)."""
    for table in {CUBES[cube.pending].table for cube in cubes}:
        await conn.execute(f"LOCK TABLE {table} IN SHARE MODE")
    for cube in cubes:
        await conn.execute(f"DELETE FROM {cube.table}")
        for grain in cube.grains:
            packed = _derived_sql(cube, grain, sums, d, "SUM(latency)")
            await conn.execute(_derive_postgres(cube, grain, sums) if d.by_bin else packed)


async def add_weeks_postgres(conn: asyncpg.Connection) -> None:
    """Week cells from day cells; the caller holds the migration transaction."""
    dims = ", ".join(ORG.dimensions)
    sums = ", ".join(f"SUM({c}) AS {c}" for c in _SUMS)
    await conn.execute("LOCK TABLE rollup IN SHARE MODE")
    await conn.execute(
        f"WITH days AS (SELECT bucket - ((bucket % {WEEK}) + {WEEK}) % {WEEK} AS week, * FROM rollup "
        f"WHERE grain = {DAY}), "
        "bins AS (SELECT week, dim_key, j.key, SUM(j.value::bigint) AS n "
        "FROM days, jsonb_each_text(days.latency) AS j GROUP BY week, dim_key, j.key), "
        "hists AS (SELECT week, dim_key, jsonb_object_agg(key, n) AS latency FROM bins GROUP BY week, dim_key), "
        f"cells AS (SELECT week, dim_key, {dims}, {sums} FROM days GROUP BY week, dim_key, {dims}) "
        f"INSERT INTO rollup (grain, bucket, dim_key, {dims}, {', '.join(_SUMS)}, latency) "
        f"SELECT {WEEK}, week, dim_key, {dims}, {', '.join(_SUMS)}, COALESCE(latency, '{{}}') "
        "FROM cells LEFT JOIN hists USING (week, dim_key)"
    )
