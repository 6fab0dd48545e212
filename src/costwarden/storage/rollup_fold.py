"""Pending rollup cells: a ledger write stores its records' cells at each cube's finest grain in
`rollup_delta`, in its own transaction (an append, no upsert); a fold later moves pending cells
into every grain of the rollups, in one transaction, so each cell counts exactly once: pending or
folded. Reports read both (storage/rollup_report.py).

A store folds in the background once `rows` cells are pending or `seconds` have passed since its
last fold; several gateways may fold at once (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so each
pending cell goes to one of them; SQLite: one writer at a time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from costwarden.domain import latency_histogram
from costwarden.domain.report import GROUP_DIMENSIONS
from costwarden.domain.rollup import CUBES, SUMS, Cell, Dims, FoldKey, collect, fold

if TYPE_CHECKING:  # the postgres extra: imported only where a PostgreSQL ledger is used
    import asyncpg

__all__ = ["DELTA", "DELTA_COLUMNS", "FoldSchedule", "collect", "delta_rows", "fold_postgres", "fold_sqlite"]

log = logging.getLogger(__name__)
DELTA = "rollup_delta"
DELTA_COLUMNS = ("cube", "bucket", *GROUP_DIMENSIONS, *SUMS, "latency")
_SUMS_AT = 2 + len(GROUP_DIMENSIONS)
_PLACES = tuple(tuple(GROUP_DIMENSIONS.index(d) for d in cube.dimensions) for cube in CUBES)
FOLD_LIMIT = 10_000  # pending cells per fold transaction


def _full(c: int, dims: Dims) -> list[str | None]:
    """A cube's dimension values in GROUP_DIMENSIONS order (NULL where the cube has none)."""
    full: list[str | None] = [None] * len(GROUP_DIMENSIONS)
    for place, value in zip(_PLACES[c], dims, strict=True):
        full[place] = value
    return full


def delta_rows(cells: dict[tuple[int, int, Dims], Cell]) -> list[tuple[Any, ...]]:
    """Rows of `rollup_delta` (DELTA_COLUMNS) for a write's pending cells."""
    return [
        (c, bucket, *_full(c, dims), *cell.sums, latency_histogram.encode(cell.latency))
        for (c, bucket, dims), cell in cells.items()
    ]


def _pending(rows: Iterable[Sequence[Any]]) -> Iterable[tuple[int, int, Dims, Sequence[int], dict[int, int]]]:
    for row in rows:
        c = int(row[0])
        dims = tuple(row[2 + place] for place in _PLACES[c])
        sums = [int(v) for v in row[_SUMS_AT : _SUMS_AT + len(SUMS)]]
        yield c, int(row[1]), dims, sums, latency_histogram.decode(row[-1])


def _upsert_sql(c: int, values: str, dim_key: str, merge: str) -> str:
    """Add cells to cube `c`'s table; `values` lists (grain, bucket, dim_key, dims, sums, latency)."""
    t, dims = CUBES[c].table, ", ".join(CUBES[c].dimensions)
    updates = ", ".join(f"{s} = {t}.{s} + excluded.{s}" for s in SUMS)
    return (
        f"INSERT INTO {t} (grain, bucket, dim_key, {dims}, {', '.join(SUMS)}, latency) "
        f"{values.format(dims=dims, dim_key=dim_key.format(dims=dims))} "
        f"ON CONFLICT (grain, bucket, dim_key) DO UPDATE SET {updates}, "
        f"latency = {merge}({t}.latency, excluded.latency)"
    )


def _fold_rows(cells: dict[FoldKey, Cell], c: int) -> list[tuple[Any, ...]]:
    return [
        (grain, bucket, *dims, *cell.sums, latency_histogram.encode(cell.latency))
        for (cube, grain, bucket, dims), cell in sorted(cells.items(), key=lambda kv: kv[0][:3])
        if cube == c
    ]


# SQLite: on the store's writer thread; BEGIN IMMEDIATE keeps other writers (and folders) out.

_SQLITE_UPSERTS = tuple(
    _upsert_sql(
        c,
        "VALUES (?, ?, {dim_key}, " + ", ".join("?" * (len(cube.dimensions) + len(SUMS) + 1)) + ")",
        "json_array(" + ", ".join("?" * len(cube.dimensions)) + ")",
        "cw_hist_merge",
    )
    for c, cube in enumerate(CUBES)
)
_SQLITE_DELTA = f"INSERT INTO {DELTA} ({', '.join(DELTA_COLUMNS)}) VALUES ({', '.join('?' * len(DELTA_COLUMNS))})"


def add_delta_sqlite(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    conn.executemany(_SQLITE_DELTA, rows)


def fold_sqlite(conn: sqlite3.Connection, limit: int = FOLD_LIMIT) -> int:
    """Fold up to `limit` pending cells, oldest first; returns how many."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = conn.execute(
            f"SELECT rowid, {', '.join(DELTA_COLUMNS)} FROM {DELTA} ORDER BY rowid LIMIT ?", (limit,)
        ).fetchall()
        if rows:
            cells = fold(_pending(row[1:] for row in rows))
            for c in range(len(CUBES)):
                upsert = _SQLITE_UPSERTS[c]
                width = len(CUBES[c].dimensions)
                conn.executemany(upsert, ((*r[:2], *r[2 : 2 + width], *r[2:]) for r in _fold_rows(cells, c)))
            conn.execute(f"DELETE FROM {DELTA} WHERE rowid <= ?", (rows[-1][0],))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(rows)


# PostgreSQL: take pending cells no other folder holds, add them up in Python, COPY the folded
# cells into a session staging table and upsert them in (grain, bucket, dim_key) order, so racing
# folders lock rollup rows in one order.

_FOLD_STAGE = "rollup_fold"
_STAGE_COLUMNS = ("cube", "grain", "bucket", *GROUP_DIMENSIONS, *SUMS, "latency")
_FOLD_STAGE_SQL = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_FOLD_STAGE} (cube INTEGER, grain INTEGER, bucket BIGINT, "
    + ", ".join(f"{d} TEXT" for d in GROUP_DIMENSIONS)
    + ", "
    + ", ".join(f"{s} {'NUMERIC' if s == 'cost_nanos' else 'BIGINT'}" for s in SUMS)
    + ", latency TEXT) ON COMMIT DELETE ROWS"
)
_TAKE = (
    f"DELETE FROM {DELTA} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {DELTA} LIMIT $1 FOR UPDATE SKIP LOCKED)) "
    f"RETURNING {', '.join(DELTA_COLUMNS)}"
)
_POSTGRES_UPSERTS = tuple(
    _upsert_sql(
        c,
        f"SELECT grain, bucket, {{dim_key}}, {{dims}}, {', '.join(SUMS)}, latency::jsonb FROM {_FOLD_STAGE} "
        f"WHERE cube = {c} ORDER BY grain, bucket, 3",
        "json_build_array({dims})::text",
        "costwarden_hist_merge",
    )
    for c in range(len(CUBES))
)


def _staged(cells: dict[FoldKey, Cell]) -> list[tuple[Any, ...]]:
    return [
        (c, grain, bucket, *_full(c, dims), *cell.sums, latency_histogram.encode(cell.latency))
        for (c, grain, bucket, dims), cell in cells.items()
    ]


async def fold_postgres(conn: asyncpg.Connection, limit: int = FOLD_LIMIT) -> int:
    """Fold up to `limit` pending cells no other folder holds; returns how many."""
    async with conn.transaction():
        rows = await conn.fetch(_TAKE, limit)
        if not rows:
            return 0
        await conn.execute(_FOLD_STAGE_SQL)
        await conn.copy_records_to_table(_FOLD_STAGE, records=_staged(fold(_pending(rows))), columns=_STAGE_COLUMNS)
        for upsert in _POSTGRES_UPSERTS:
            await conn.execute(upsert)
    return len(rows)


class FoldSchedule:
    """When a store folds: in the background, once `rows` cells are pending or `seconds` have
    passed since its last fold. A failed fold (the database is down) is retried at the next one."""

    def __init__(
        self,
        fold_some: Callable[[int], Awaitable[int]],
        rows: int = FOLD_LIMIT,
        seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fold_some = fold_some
        self._rows, self._seconds, self._clock = rows, seconds, clock
        self._pending = 0
        self._last = clock()
        self._task: asyncio.Task[int] | None = None

    def added(self, cells: int) -> None:
        """A write committed `cells` pending cells."""
        self._pending += cells
        due = self._pending >= self._rows or (self._pending > 0 and self._clock() - self._last >= self._seconds)
        if due and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self.drain(), name="costwarden-rollup-fold")

    async def drain(self) -> int:
        """Fold every pending cell (of any writer); returns how many."""
        self._pending, self._last = 0, self._clock()
        folded = 0
        try:
            while True:
                n = await self._fold_some(FOLD_LIMIT)
                folded += n
                if n < FOLD_LIMIT:  # drained (what arrives meanwhile waits for the next fold)
                    break
        except Exception as exc:  # the cells stay pending, reports still count them
            log.warning("rollup fold failed, retried later: %s: %s", type(exc).__name__, exc)
        return folded

    async def close(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
