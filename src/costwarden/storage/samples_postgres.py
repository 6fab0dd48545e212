"""Compute samples in the PostgreSQL ledger database (tables of migration 0018), on a small pool."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    import asyncpg

_UPSERT = STATUS_UPSERT.format("$1, $2, $3, $4, $5, $6")


class PostgresSamples:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._pool: asyncpg.Pool | None = None

    async def _get(self) -> asyncpg.Pool:
        if self._pool is None:
            import asyncpg  # the postgres extra: imported only with a PostgreSQL ledger

            self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=2)
        return self._pool

    async def write_samples(self, samples: Sequence[ProcessSample | GpuSample]) -> int:
        marks = ", ".join(f"${i}" for i in range(1, 14))
        pool = await self._get()
        await pool.executemany(f"INSERT INTO compute_samples ({SAMPLE_COLUMNS}) VALUES ({marks})",
                               [sample_row(s) for s in samples])  # fmt: skip
        return len(samples)

    async def samples(self, start: float, end: float) -> list[ProcessSample | GpuSample]:
        pool = await self._get()
        sql = f"SELECT {SAMPLE_COLUMNS} FROM compute_samples WHERE at >= $1 AND at <= $2 ORDER BY at"
        return [sample_from_row(tuple(r)) for r in await pool.fetch(sql, start, end)]

    async def save_status(self, statuses: Sequence[CollectorStatus], at: float) -> None:
        pool = await self._get()
        await pool.executemany(_UPSERT, [status_row(s, at) for s in statuses])

    async def statuses(self) -> list[CollectorStatus]:
        pool = await self._get()
        rows = await pool.fetch(f"SELECT {STATUS_COLUMNS} FROM compute_collectors ORDER BY name")
        return statuses_from_rows(tuple(r) for r in rows)

    async def prune_samples(self, before: float) -> int:
        pool = await self._get()
        done = await pool.execute("DELETE FROM compute_samples WHERE at < $1", before)
        return int(done.split()[-1])

    async def oldest_sample(self, after: float | None = None) -> float | None:
        pool = await self._get()
        oldest = await pool.fetchval("SELECT MIN(at) FROM compute_samples WHERE at >= $1",
                                     -math.inf if after is None else after)  # fmt: skip
        return None if oldest is None else float(oldest)

    async def write_minutes(self, rows: Sequence[MinuteTotal]) -> int:
        marks = ", ".join(f"${i}" for i in range(1, 11))
        sql = (f"INSERT INTO compute_minutes ({MINUTE_COLUMNS}) VALUES ({marks}) "
               f"ON CONFLICT (minute, source, deployment, unit) DO UPDATE SET {MINUTE_UPDATE}")  # fmt: skip
        pool = await self._get()
        await pool.executemany(sql, [minute_row(r) for r in rows])
        return len(rows)

    async def minutes(self, start: float, end: float) -> list[MinuteTotal]:
        pool = await self._get()
        sql = f"SELECT {MINUTE_COLUMNS} FROM compute_minutes WHERE minute >= $1 AND minute < $2 ORDER BY minute"
        return [minute_from_row(tuple(r)) for r in await pool.fetch(sql, math.floor(start), math.ceil(end))]

    async def last_minute(self) -> int | None:
        pool = await self._get()
        last = await pool.fetchval("SELECT MAX(minute) FROM compute_minutes")
        return None if last is None else int(last)

    async def prune_minutes(self, before: float) -> int:
        pool = await self._get()
        done = await pool.execute("DELETE FROM compute_minutes WHERE minute + 60 <= $1", math.floor(before))
        return int(done.split()[-1])

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
