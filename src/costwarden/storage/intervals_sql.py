"""The ledger's upstream intervals for allocation, read lean: only the columns allocation needs, a page
at a time, on a connection of its own (SQLite or PostgreSQL). Much cheaper than decoding whole records.

Each row: (deployment, started_at, ended_at, upstream_ms, tokens, *the `by` columns)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from typing import Any

from costwarden.domain.allocation_input import DIMENSIONS
from costwarden.storage.sqlite_conn import sqlite_path

# (deployment: str, started_at: float, ended_at: float, upstream_ms: float, tokens: int, *labels: str | None), as read.
IntervalRow = tuple[Any, ...]
PAGE = 50_000


def _sql(by: Sequence[str] | None, deployments: int, mark: str) -> str:
    """The interval rows' query (`by` None: their count), `mark` the dialect's placeholder."""
    if by is not None and any(d not in DIMENSIONS for d in by):
        raise ValueError(f"cannot group by {list(by)}: use {list(DIMENSIONS)}")
    columns = ["deployment", "started_at", "ended_at", "upstream_ms", "input_tokens + output_tokens", *(by or ())]
    marks = ", ".join(mark.format(i + 3) for i in range(deployments))
    return (
        f"SELECT {'count(*)' if by is None else ', '.join(columns)} FROM ledger WHERE started_at >= {mark.format(1)} "
        f"AND started_at < {mark.format(2)} AND upstream_ms IS NOT NULL AND deployment IN ({marks})"
    )


async def sqlite_intervals(
    path: str, start: float, end: float, deployments: Sequence[str], by: Sequence[str]
) -> AsyncIterator[list[IntervalRow]]:
    if not deployments:
        return
    conn = await asyncio.to_thread(lambda: sqlite3.connect(path, timeout=30, check_same_thread=False))
    try:
        cursor = await asyncio.to_thread(conn.execute, _sql(by, len(deployments), "?"), (start, end, *deployments))
        while page := await asyncio.to_thread(cursor.fetchmany, PAGE):
            yield page
    finally:
        await asyncio.to_thread(conn.close)


async def postgres_intervals(
    dsn: str, start: float, end: float, deployments: Sequence[str], by: Sequence[str]
) -> AsyncIterator[list[IntervalRow]]:
    if not deployments:
        return
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction(readonly=True):
            cursor = await conn.cursor(_sql(by, len(deployments), "${}"), start, end, *deployments)
            while page := await cursor.fetch(PAGE):
                yield [tuple(r) for r in page]
    finally:
        await conn.close()


async def ledger_interval_count(url: str, start: float, end: float, deployments: Sequence[str]) -> int:
    """How many rows `ledger_intervals` yields over the same span: a progress bar's total (it costs a
    scan of the span's index entries and rows, ~0.3-0.6 s per million on SQLite, so ask only to show it)."""
    if not deployments:
        return 0
    if url.startswith("sqlite:///"):
        path = sqlite_path(url)

        def count() -> int:
            conn = sqlite3.connect(path, timeout=30)
            try:
                return int(conn.execute(_sql(None, len(deployments), "?"), (start, end, *deployments)).fetchone()[0])
            finally:
                conn.close()

        return await asyncio.to_thread(count)
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(_sql(None, len(deployments), "${}"), start, end, *deployments))
    finally:
        await conn.close()


def ledger_intervals(
    url: str, start: float, end: float, deployments: Sequence[str], by: Sequence[str]
) -> AsyncIterator[list[IntervalRow]]:
    """Pages of interval rows from the ledger at `url` (sqlite:///path or postgresql://...)."""
    if url.startswith("sqlite:///"):
        return sqlite_intervals(sqlite_path(url), start, end, deployments, by)
    return postgres_intervals(url, start, end, deployments, by)
