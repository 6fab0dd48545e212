"""Pending rollup cells: a ledger write appends the cells of the records it stored to
`rollup_delta` (each cube's finest bucket, dimensions and latency bin, with exact sums), in its
own transaction: an append, no upsert (on SQLite a cell's bins seen by one write in one row, with
their histogram: migration 0025). A fold later moves pending cells into every grain of the
rollups in one transaction (in SQL), so each counts exactly once: pending or folded. Reports read
both (storage/rollup_report.py).

A store folds in the background once it has stored `rows` records or `seconds` have passed since
its last fold. On PostgreSQL each base cube's cells have their own folder, one gateway at a time
(an advisory lock: the others skip), and a store folds both at once; on SQLite the write lock serialises folders.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from costwarden.domain import latency_histogram
from costwarden.domain.report import GROUP_DIMENSIONS
from costwarden.domain.rollup import BASE_CUBES, CUBES, SUMS, UNIT_SUMS, Dims, PendingKey, collect
from costwarden.storage.rollup_write import (
    HIST_ADD,
    PACKED_UNIT,
    POSTGRES_CELLS,
    SQLITE_PENDING_ROLLUP,
    RollupDialect,
    upsert_sql,
)
from costwarden.storage.sqlite_conn import insert_rows

if TYPE_CHECKING:  # the postgres extra: imported only where a PostgreSQL ledger is used
    import asyncpg

__all__ = ["DELTA", "DELTA_COLUMNS", "FoldSchedule", "collect", "delta_rows", "fold_postgres", "fold_sqlite"]

log = logging.getLogger(__name__)
DELTA = "rollup_delta"
DELTA_COLUMNS = ("cube", "bucket", *GROUP_DIMENSIONS, "bin", *SUMS)
DELTA_BIN = DELTA_COLUMNS.index("bin")
FOLD_LIMIT = 50_000  # pending cells per fold transaction (PostgreSQL)
SQLITE_FOLD_LIMIT = 10_000  # SQLite: short transactions, so writes and key changes interleave
# Advisory lock ids: alone, what folders took before the split (now shared); with a base cube index,
# one PostgreSQL folder per base cube at a time (a pair of int4 keys never meets an int8 key).
_FOLD_LOCK = 7_314_213
# Per cube: where each of GROUP_DIMENSIONS is in (cube dimensions..., None).
_SPREAD = tuple(
    itemgetter(*(cube.dimensions.index(d) if d in cube.dimensions else len(cube.dimensions) for d in GROUP_DIMENSIONS))
    for cube in BASE_CUBES
)


def delta_rows(cells: dict[PendingKey, list[int]]) -> list[tuple[Any, ...]]:
    """Rows of `rollup_delta` (DELTA_COLUMNS) for a write's pending cells; dimensions a cube has
    not (key_id for the org cube) are NULL."""
    spread = _SPREAD
    return [(c, bucket, *spread[c]((*dims, None)), index, *sums) for (c, bucket, dims, index), sums in cells.items()]


def _facts(c: int, grain: int, source: str, histogram: str = "bin") -> str:
    """Pending cells for cube `c` in `source` as facts at `grain` (see rollup_write.upsert_sql): its
    own, or for a derived cube its source cube's (their buckets at that cube's finest grain), with
    their latency `histogram` columns (a bin; a bin and a histogram on SQLite, migration 0025; or a
    packed histogram)."""
    cube = CUBES[c]
    finest = CUBES[cube.pending].grains[0]
    bucket = "bucket" if grain == finest else f"(bucket - ((bucket % {grain}) + {grain}) % {grain})"
    return (
        f"SELECT {bucket} AS bucket, {', '.join(cube.dimensions)}, {histogram}, requests, errors AS error, "
        f"input_tokens, output_tokens, cached_tokens, items, {', '.join(UNIT_SUMS)}, cost_nanos AS cost FROM {source}"
    )


def _upserts(source: str, d: RollupDialect, histogram: str = "bin") -> list[str]:
    return [
        upsert_sql(cube, grain, _facts(c, grain, f"{source} AND cube = {cube.pending}", histogram), d)
        for c, cube in enumerate(CUBES)
        for grain in cube.grains
    ]


# SQLite: on the store's writer thread; BEGIN IMMEDIATE keeps other writers (and folders) out.

_SQLITE_DELTA = f"{DELTA} ({', '.join(DELTA_COLUMNS)}, latency)"
_SQLITE_UPSERTS = _upserts(f"{DELTA} WHERE rowid <= ?", SQLITE_PENDING_ROLLUP, "bin, latency")
_SQLITE_TAKE = f"SELECT COUNT(*), MAX(rowid) FROM (SELECT rowid FROM {DELTA} ORDER BY rowid LIMIT ?)"


def sqlite_delta_rows(cells: dict[PendingKey, list[int]]) -> list[tuple[Any, ...]]:
    """SQLite's rows of a write's pending cells (DELTA_COLUMNS, then `latency`, migration 0025): the
    cells of one cube, bucket and dimensions as one row, summed, with their histogram (bins by
    requests; `bin` is the first one's) where they fall in several bins; a cell alone as on PostgreSQL."""
    spread = _SPREAD
    rows: list[tuple[Any, ...]] = []
    first: dict[tuple[int, int, Dims], int] = {}  # where in `rows` each cube, bucket and dimensions is
    several: dict[int, list[tuple[int, Sequence[int]]]] = {}  # of those with several bins: each bin's sums
    for (c, bucket, dims, index), sums in cells.items():
        head = (c, bucket, dims)
        at = first.get(head)
        if at is None:
            first[head] = len(rows)
            rows.append((c, bucket, *spread[c]((*dims, None)), index, *sums, None))
        else:
            several.setdefault(at, [(rows[at][DELTA_BIN], rows[at][DELTA_BIN + 1 : -1])]).append((index, sums))
    for at, bins in several.items():
        summed = map(sum, zip(*(s for _, s in bins), strict=True))
        latency = latency_histogram.encode({i: s[0] for i, s in bins})
        rows[at] = (*rows[at][: DELTA_BIN + 1], *summed, latency)
    return rows


def add_delta_sqlite(conn: sqlite3.Connection, cells: dict[PendingKey, list[int]]) -> None:
    insert_rows(conn, _SQLITE_DELTA, sqlite_delta_rows(cells))


def fold_sqlite(conn: sqlite3.Connection, limit: int = FOLD_LIMIT) -> int:
    """Fold up to `limit` pending cells, oldest first; returns how many."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        taken, last = conn.execute(_SQLITE_TAKE, (limit,)).fetchone()
        if taken:
            for sql in _SQLITE_UPSERTS:
                conn.execute(sql, (last,))
            conn.execute(f"DELETE FROM {DELTA} WHERE rowid <= ?", (last,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return int(taken)


# PostgreSQL: one statement per base cube takes its pending cells (DELETE … RETURNING) and upserts
# them into every grain of the cubes reading them (data-modifying CTEs), under a transaction-scoped
# advisory lock per base cube: the cubes' folders run at once (their tables are disjoint), on one
# gateway or several. Each also holds the old single folder lock shared, so a gateway from before
# (which takes it exclusively and folds every cube) never runs beside them.


def _take(c: int) -> str:
    return (
        f"DELETE FROM {DELTA} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {DELTA} WHERE cube = {c} LIMIT $1 "
        "FOR UPDATE SKIP LOCKED)) RETURNING *"
    )


def _cells(c: int) -> str:
    """The taken pending rows of base cube `c` added up once per cell of its finest grain, their
    bins packed into one histogram (a packed NUMERIC): every grain of every cube reading them
    starts from these cells (`_facts` of `cells`) instead of grouping the taken rows (one per cell
    and bin) again."""
    dims = ", ".join(CUBES[c].dimensions)
    sums = ", ".join(f"SUM({s}) AS {s}" for s in SUMS)
    histogram = HIST_ADD.format("requests * " + PACKED_UNIT.format(bin="bin"))
    return f"SELECT bucket, {dims}, {sums}, {histogram} AS latency FROM taken GROUP BY bucket, {dims}"


def _fold_postgres_sql(c: int) -> str:
    upserts = [
        upsert_sql(
            cube,
            grain,
            _facts(i, grain, "cells", "latency"),
            POSTGRES_CELLS,
            grouped=i == c and grain == cube.grains[0],
        )
        for i, cube in enumerate(CUBES)
        if cube.pending == c
        for grain in cube.grains
    ]
    return (
        f"WITH taken AS ({_take(c)}), cells AS ({_cells(c)}), "
        + ", ".join(f"fold_{i} AS ({sql})" for i, sql in enumerate(upserts))
        + " SELECT COUNT(*) FROM taken"
    )


_FOLDS = tuple(_fold_postgres_sql(c) for c in range(len(BASE_CUBES)))


async def add_delta_postgres(conn: asyncpg.Connection, cells: dict[PendingKey, list[int]]) -> None:
    await conn.copy_records_to_table(DELTA, records=delta_rows(cells), columns=DELTA_COLUMNS)


async def fold_postgres(conn: asyncpg.Connection, limit: int = FOLD_LIMIT, cube: int = 0) -> int:
    """Fold up to `limit` pending cells of base cube `cube` (an index in BASE_CUBES); returns how
    many (0 while another gateway folds that cube)."""
    async with conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock_shared($1)", _FOLD_LOCK):
            return 0  # a gateway from before this folder split folds every cube
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1, $2)", _FOLD_LOCK, cube):
            return 0
        return int(await conn.fetchval(_FOLDS[cube], limit))


class FoldSchedule:
    """When a store folds: in the background, once it has stored `rows` records or `seconds` have
    passed since its last fold (`rows=None`: never; the caller folds), `limit` cells per
    transaction. A failed fold (the database is down) is retried at the next one."""

    def __init__(
        self,
        fold_some: Callable[[int], Awaitable[int]],
        rows: int | None = FOLD_LIMIT,
        seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        limit: int = FOLD_LIMIT,
    ) -> None:
        self._fold_some = fold_some
        self._limit = limit
        self._rows, self._seconds, self._clock = rows, seconds, clock
        self._pending = 0
        self._last = clock()
        self._task: asyncio.Task[int] | None = None

    def added(self, records: int) -> None:
        """A write stored `records` records (and their pending cells)."""
        self._pending += records
        if self._rows is None:
            return
        due = self._pending >= self._rows or (self._pending > 0 and self._clock() - self._last >= self._seconds)
        if due and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self.drain(), name="costwarden-rollup-fold")

    async def drain(self) -> int:
        """Fold every pending cell (of any writer); returns how many."""
        self._pending, self._last = 0, self._clock()
        folded = 0
        try:
            while True:
                n = await self._fold_some(self._limit)
                folded += n
                if n < self._limit:  # drained (what arrives meanwhile waits for the next fold)
                    break
        except Exception as exc:  # the cells stay pending, reports still count them
            log.warning("rollup fold failed, retried later: %s: %s", type(exc).__name__, exc)
        return folded

    async def close(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)  # its own end, not the caller's cancellation
            self._task = None
