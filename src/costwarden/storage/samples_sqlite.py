"""Compute samples in the SQLite ledger file (tables of migration 0018), on a connection of their own:
samples come every few seconds, so each call opens, works and closes in a worker thread."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Sequence
from typing import TypeVar

from costwarden.domain.collector_status import CollectorStatus
from costwarden.domain.compute_rollup import MinuteTotal
from costwarden.domain.compute_sample import GpuSample, ProcessSample
from costwarden.storage.samples_codec import (
    MINUTE_COLUMNS,
    MINUTE_UPDATE,
    SAMPLE_COLUMNS,
    STATUS_COLUMNS,
    STATUS_UPSERT,
    minute_from_row,
    minute_row,
    sample_from_row,
    sample_row,
    status_row,
    statuses_from_rows,
)
from costwarden.storage.sqlite_conn import sqlite_call

T = TypeVar("T")
_UPSERT = STATUS_UPSERT.format("?, ?, ?, ?, ?, ?")


class SQLiteSamples:
    def __init__(self, path: str) -> None:
        self.path = path

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await sqlite_call(self.path, fn)

    async def write_samples(self, samples: Sequence[ProcessSample | GpuSample]) -> int:
        rows = [sample_row(s) for s in samples]
        sql = f"INSERT INTO compute_samples ({SAMPLE_COLUMNS}) VALUES ({', '.join('?' * 13)})"
        await self._run(lambda conn: conn.executemany(sql, rows))
        return len(rows)

    async def samples(self, start: float, end: float) -> list[ProcessSample | GpuSample]:
        sql = f"SELECT {SAMPLE_COLUMNS} FROM compute_samples WHERE at >= ? AND at <= ? ORDER BY at"
        rows = await self._run(lambda conn: conn.execute(sql, (start, end)).fetchall())
        return [sample_from_row(r) for r in rows]

    async def save_status(self, statuses: Sequence[CollectorStatus], at: float) -> None:
        rows = [status_row(s, at) for s in statuses]
        await self._run(lambda conn: conn.executemany(_UPSERT, rows))

    async def statuses(self) -> list[CollectorStatus]:
        sql = f"SELECT {STATUS_COLUMNS} FROM compute_collectors ORDER BY name"
        return statuses_from_rows(await self._run(lambda conn: conn.execute(sql).fetchall()))

    async def prune_samples(self, before: float) -> int:
        sql = "DELETE FROM compute_samples WHERE at < ?"
        return await self._run(lambda conn: conn.execute(sql, (before,)).rowcount)

    async def oldest_sample(self, after: float | None = None) -> float | None:
        sql = "SELECT MIN(at) FROM compute_samples WHERE at >= ?"
        row = await self._run(lambda conn: conn.execute(sql, (-math.inf if after is None else after,)).fetchone())
        return None if row is None or row[0] is None else float(row[0])

    async def write_minutes(self, rows: Sequence[MinuteTotal]) -> int:
        sql = (f"INSERT INTO compute_minutes ({MINUTE_COLUMNS}) VALUES ({', '.join('?' * 10)}) "
               f"ON CONFLICT (minute, source, deployment, unit) DO UPDATE SET {MINUTE_UPDATE}")  # fmt: skip
        values = [minute_row(r) for r in rows]
        await self._run(lambda conn: conn.executemany(sql, values))
        return len(values)

    async def minutes(self, start: float, end: float) -> list[MinuteTotal]:
        sql = f"SELECT {MINUTE_COLUMNS} FROM compute_minutes WHERE minute >= ? AND minute < ? ORDER BY minute"
        return [minute_from_row(r) for r in await self._run(lambda conn: conn.execute(sql, (start, end)).fetchall())]

    async def last_minute(self) -> int | None:
        row = await self._run(lambda conn: conn.execute("SELECT MAX(minute) FROM compute_minutes").fetchone())
        return None if row is None or row[0] is None else int(row[0])

    async def prune_minutes(self, before: float) -> int:
        sql = "DELETE FROM compute_minutes WHERE minute + 60 <= ?"
        return await self._run(lambda conn: conn.execute(sql, (before,)).rowcount)

    async def close(self) -> None:
        return None
