"""Keeping the rollup tables up to date, in SQL, in the ledger write's own transaction: the rows
a write actually stored are grouped per cube, grain, bucket and dimensions and added to the
rollups; a ledger that predates them is backfilled once, by the migration that creates them.

Only rows the insert stored count (it is idempotent on request_id), so a replayed spool or a
record written twice adds nothing. Buckets are exact at their edges, as in domain/rollup.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from costwarden.domain import latency_histogram
from costwarden.domain.latency_histogram import CEILING_MS, FLOOR_MS, LOG_GAMMA
from costwarden.domain.rollup import CUBES, Cube

if TYPE_CHECKING:  # the postgres extra: imported only where a PostgreSQL ledger is used
    import asyncpg

MIGRATION = 6  # 0006_rollups: the backfill runs after it, in the same transaction
_SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cached_tokens", "items", "cost_nanos")
_BEFORE_EVERY_ROW = -1  # a rowid mark below every row: the backfill rolls up the whole ledger


@dataclass(frozen=True, slots=True)
class _Dialect:
    floor: str  # SQL turning `started_at / grain` into an integer (any rounding: _bucket settles it)
    latency_bin: str  # the histogram bin of latency_ms (domain/latency_histogram.py)
    cost_nanos: str  # a row's cost in nano-dollars
    dim_key: str  # canonical text of the dimension values, `{dims}` filled in
    histogram: str  # aggregate of (bin, n) rows into one histogram object; "": cw_hist(bin) of each row
    merge: str  # function merging two stored histograms


_SQLITE = _Dialect(
    floor="CAST(started_at / {grain} AS INTEGER)",
    latency_bin="cw_bin(latency_ms)",
    cost_nanos="cost_nanos",
    dim_key="json_array({dims})",
    histogram="",  # one GROUP BY with a histogram aggregate: measured 40 % faster than two
    merge="cw_hist_merge",
)
_POSTGRES = _Dialect(
    floor="CAST(FLOOR(started_at / {grain}) AS BIGINT)",
    latency_bin=(
        f"CASE WHEN latency_ms > {FLOOR_MS!r} THEN CAST(GREATEST(1, CEIL(LN(LEAST(latency_ms, {CEILING_MS!r}) "
        f"/ {FLOOR_MS!r}) / {LOG_GAMMA!r})) AS INTEGER) ELSE 0 END"
    ),
    cost_nanos="cost_usd * 1000000000",
    dim_key="json_build_array({dims})::text",
    histogram="jsonb_object_agg(bin::text, n)",
    merge="costwarden_hist_merge",
)


def _bucket(grain: int, d: _Dialect) -> str:
    """Exact bucket start: the division may round across an edge, so settle it by comparison."""
    b0 = f"({d.floor.format(grain=grain)} * {grain})"
    return (
        f"CASE WHEN {b0} > started_at THEN {b0} - {grain} "
        f"WHEN {b0} + {grain} <= started_at THEN {b0} + {grain} ELSE {b0} END"
    )


def upsert_sql(cube: Cube, grain: int, source: str, d: _Dialect) -> str:
    """Add the rows of `source` (ledger columns) to `cube` at `grain`, one statement."""
    dims = ", ".join(cube.dimensions)
    facts = (
        f"SELECT {_bucket(grain, d)} AS bucket, {dims}, {d.latency_bin} AS bin, "
        f"CASE WHEN outcome <> 'served' THEN 1 ELSE 0 END AS error, input_tokens, output_tokens, "
        f"cached_tokens, items, {d.cost_nanos} AS cost FROM {source}"
    )
    if d.histogram:
        source = (
            f"(SELECT bucket, {dims}, bin, COUNT(*) AS n, SUM(error) AS error, SUM(input_tokens) AS input_tokens, "
            "SUM(output_tokens) AS output_tokens, SUM(cached_tokens) AS cached_tokens, SUM(items) AS items, "
            f"SUM(cost) AS cost FROM ({facts}) AS facts GROUP BY bucket, {dims}, bin) AS bins"
        )
        requests, histogram = "SUM(n)", d.histogram
    else:
        source, requests, histogram = f"({facts}) AS facts", "COUNT(*)", "cw_hist(bin)"
    t = cube.table
    updates = ", ".join(f"{c} = {t}.{c} + excluded.{c}" for c in _SUMS)
    return (
        f"INSERT INTO {t} (grain, bucket, dim_key, {dims}, {', '.join(_SUMS)}, latency) "
        f"SELECT {grain}, bucket, {d.dim_key.format(dims=dims)}, {dims}, {requests}, SUM(error), SUM(input_tokens), "
        f"SUM(output_tokens), SUM(cached_tokens), SUM(items), SUM(cost), {histogram} FROM {source} WHERE true "
        f"GROUP BY bucket, {dims} ORDER BY bucket, 3 "  # one lock order for racing writers
        f"ON CONFLICT (grain, bucket, dim_key) DO UPDATE SET {updates}, "
        f"latency = {d.merge}({t}.latency, excluded.latency)"
    )


# SQLite: on the store's worker thread, inside the write's BEGIN IMMEDIATE transaction. New rows
# get rowids above the largest one before the insert, and the write lock keeps other writers out.

_SQLITE_UPSERTS = tuple(
    upsert_sql(cube, grain, "ledger WHERE rowid > ?", _SQLITE) for cube in CUBES for grain in cube.grains
)


def mark_sqlite(conn: sqlite3.Connection) -> int:
    """The largest rowid of the ledger before an insert: the rows above it are the new ones."""
    return int(conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM ledger").fetchone()[0])


class _Histogram:
    """SQLite aggregate `cw_hist(bin)`: the encoded histogram of a group's bins."""

    def __init__(self) -> None:
        self.counts: latency_histogram.Histogram = {}

    def step(self, index: int) -> None:
        self.counts[index] = self.counts.get(index, 0) + 1

    def finalize(self) -> str:
        return latency_histogram.encode(self.counts)


def add_sqlite(conn: sqlite3.Connection, mark: int) -> None:
    """Add the ledger rows above `mark` to every rollup."""
    conn.create_function("cw_bin", 1, latency_histogram.bin_of, deterministic=True)
    conn.create_function("cw_hist_merge", 2, latency_histogram.merge_text, deterministic=True)
    conn.create_aggregate("cw_hist", 1, _Histogram)  # type: ignore[arg-type]  # typeshed: finalize() -> int only
    for sql in _SQLITE_UPSERTS:
        conn.execute(sql, (mark,))


def backfill_sqlite(conn: sqlite3.Connection) -> None:
    """Roll up every record already in the ledger (in the migration's transaction)."""
    add_sqlite(conn, _BEFORE_EVERY_ROW)


# PostgreSQL: the batch is COPYed into a temporary staging table (with each record's histogram
# bin, computed once in Python), then one statement merges it into the ledger, idempotent on
# request_id, and adds exactly the rows it stored to every rollup (data-modifying CTEs).

STAGE = "ledger_stage"
_STAGED = replace(_POSTGRES, latency_bin="bin")


def stage_postgres(columns: Sequence[tuple[str, str]]) -> str:
    """The session's staging table: the ledger's columns (no constraints: the merge checks) and
    the bin; emptied by every commit and rollback, so no batch sees another's rows."""
    cols = ", ".join(f"{name} {sql_type}" for name, sql_type in columns)
    return f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} ({cols}, bin INTEGER) ON COMMIT DELETE ROWS"


def merge_postgres(ledger_columns: Sequence[str]) -> str:
    """Move the staged rows into the ledger; returns how many it stored and rolls up exactly those.
    The staged request ids are distinct (the caller keeps the first of each)."""
    cols = ", ".join(ledger_columns)
    insert = (
        f"INSERT INTO ledger ({cols}) SELECT {cols} FROM {STAGE} "
        "ON CONFLICT (request_id) DO NOTHING RETURNING request_id"
    )
    facts = f"SELECT s.* FROM {STAGE} AS s JOIN stored USING (request_id)"
    upserts = [upsert_sql(cube, grain, "facts", _STAGED) for cube in CUBES for grain in cube.grains]
    ctes = ", ".join(f"rollup_{i} AS ({sql})" for i, sql in enumerate(upserts))
    return f"WITH stored AS ({insert}), facts AS MATERIALIZED ({facts}), {ctes} SELECT COUNT(*) FROM stored"


async def backfill_postgres(conn: asyncpg.Connection) -> None:
    """Roll up every record already in the ledger; the caller holds the migration transaction."""
    await conn.execute("LOCK TABLE ledger IN SHARE MODE")  # writers wait until the backfill commits
    for cube in CUBES:
        for grain in cube.grains:
            await conn.execute(upsert_sql(cube, grain, "ledger", _POSTGRES))
