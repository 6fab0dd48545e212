"""The batch queue in PostgreSQL: several gateways drain one queue together.

A claim takes runnable jobs with `FOR UPDATE SKIP LOCKED`, so two workers never lease the same
job; a lease that expires (its gateway died) makes the job claimable again. Closing a batch locks
its row first, so two gateways close it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from costwarden.domain.batch import Batch, BatchDepth, BatchFile, BatchStatus, Job, JobResult, JobView
from costwarden.domain.batch_files import FileQuery, Pruned, within_bytes
from costwarden.domain.batch_input import LineError
from costwarden.domain.deferral import DueCallback
from costwarden.storage import queue_files as f
from costwarden.storage import queue_sql as q
from costwarden.storage.queue_close import close_plan, result_files

_SCHEMA_LOCK = 0x636F_7374_7175  # advisory lock: two gateways starting together create the tables once
# One statement (one round trip) per claim: lock the jobs with SKIP LOCKED, lease them, return them.
_CLAIM = (
    "WITH picked AS (SELECT j.id FROM batch_jobs j JOIN batches b ON b.id = j.batch_id WHERE {which} "
    "LIMIT $4 FOR UPDATE OF j SKIP LOCKED) "
    "UPDATE batch_jobs j SET state = 'leased', owner = $1, lease_until = $2, attempts = j.attempts + 1 "
    f"FROM picked, batches b WHERE j.id = picked.id AND b.id = j.batch_id RETURNING {q.JOB_FIELDS}"
)
_CLAIM_EXPIRED = _CLAIM.format(which=q.EXPIRED.replace("?", "$3"))
_CLAIM_WAITING = _CLAIM.format(which=q.WAITING.replace("?", "$3"))
_DUE_CALLBACKS = q.numbered(q.DUE_CALLBACKS + " FOR UPDATE OF c SKIP LOCKED")  # two gateways: one claim each
_HAS_FINISHED = (
    "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'batches' "
    "AND column_name = 'finished_at'"
)
_EXPIRED_EVERY_S = 1.0  # leases of dead workers are looked for at most this often (they are rare)


def _count(status: str) -> int:
    """Rows touched, from asyncpg's command tag (`UPDATE 3`)."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresQueue:
    """BatchStore and JobQueue in PostgreSQL (asyncpg pool)."""

    def __init__(self, dsn: str, max_size: int = 10) -> None:  # claims and results of up to 10 jobs at once
        self.dsn = dsn
        self._max = max_size
        self._pool: asyncpg.Pool | None = None
        self._expired_checked_at = float("-inf")

    @classmethod
    def from_url(cls, url: str) -> PostgresQueue:
        return cls(url)

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("PostgresQueue.open() was not called")
        return self._pool

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self._max)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            for statement in q.SCHEMA.format(blob="BYTEA").split(";"):
                await conn.execute(statement)
            if await conn.fetchval(_HAS_FINISHED) is None:  # a queue made before retention (queue_files.ADD_FINISHED)
                await conn.execute(f.ADD_FINISHED)
                await conn.execute(f.BACKFILL_FINISHED)
            await conn.execute(f.FINISHED_INDEX)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def put_file(self, file: BatchFile, content: bytes) -> None:
        await self.pool.execute(q.numbered(q.FILE_INSERT), *q.file_row(file, content))

    async def file(self, file_id: str, team: str) -> tuple[BatchFile, bytes] | None:
        sql = f"SELECT {q.FILE_COLUMNS}, content FROM batch_files WHERE id = $1 AND team = $2"
        row = await self.pool.fetchrow(sql, file_id, team)
        return None if row is None else (q.file_from_row(tuple(row)), bytes(row[6]))

    async def files(self, team: str, query: FileQuery) -> list[BatchFile]:
        sql, values = f.file_list(team, query, query.limit)
        return [q.file_from_row(tuple(r)) for r in await self.pool.fetch(q.numbered(sql), *values)]

    async def delete_file(self, file_id: str, team: str) -> bool:
        return _count(await self.pool.execute(q.numbered(f.DELETE_FILE), file_id, team)) > 0

    async def prune_finished(self, before: float, limit: int) -> Pruned:
        async with self.pool.acquire() as conn, conn.transaction():
            batches = jobs = files = 0
            for batch_id, output_id, error_id in await conn.fetch(q.numbered(f.FINISHED), before, limit):
                room = limit - batches - jobs
                if room <= 0:
                    break
                await conn.execute(q.numbered(f.DELETE_CALLBACKS), batch_id, room)
                gone = _count(await conn.execute(q.numbered(f.DELETE_JOBS), batch_id, room))
                jobs += gone
                if gone < room:  # its last jobs went: the batch and its result files go too
                    for file_id in (output_id, error_id):
                        if file_id is not None:
                            files += _count(await conn.execute(q.numbered(f.DELETE_FILE_ID), file_id))
                    await conn.execute(q.numbered(f.DELETE_BATCH), batch_id)
                    batches += 1
            if batches or jobs:
                return Pruned(batches, jobs, files)
            stale = await conn.fetch(q.numbered(f.STALE_UPLOADS), before, limit)
            uploads = within_bytes([(r[0], int(r[1])) for r in stale])
            await conn.executemany(q.numbered(f.DELETE_FILE_ID), [(i,) for i in uploads])
            return Pruned(files=len(uploads))

    async def create_batch(
        self, batch: Batch, jobs: Sequence[Job], errors: Sequence[LineError], callback: str | None = None
    ) -> None:
        error_ids = [f"{batch.id}-line-{e.line}" for e in errors]
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(q.numbered(q.BATCH_INSERT), *q.batch_row(batch))
            await conn.executemany(q.numbered(q.JOB_INSERT), q.job_rows(batch, jobs, errors, error_ids))
            if callback is not None:
                rows = [(job.id, callback, batch.created_at) for job in jobs]
                await conn.executemany(q.numbered(q.CALLBACK_INSERT), rows)

    async def _read_batch(self, conn: Any, batch_id: str, team: str | None) -> Batch | None:
        sql = f"SELECT {q.BATCH_COLUMNS} FROM batches WHERE id = $1"
        if team is None:
            row = await conn.fetchrow(sql, batch_id)
        else:
            row = await conn.fetchrow(sql + " AND team = $2", batch_id, team)
        if row is None:
            return None
        return q.batch_from_row(tuple(row), tuple(await conn.fetchrow(q.numbered(q.COUNTS), batch_id)))

    async def batch(self, batch_id: str, team: str) -> Batch | None:
        async with self.pool.acquire() as conn:
            return await self._read_batch(conn, batch_id, team)

    async def batches(self, team: str, after: str | None, limit: int) -> list[Batch]:
        async with self.pool.acquire() as conn:
            if after is None:
                sql = "SELECT id FROM batches WHERE team = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
                ids = [r[0] for r in await conn.fetch(sql, team, limit)]
            else:
                sql = (
                    "SELECT id FROM batches WHERE team = $1 AND (created_at, id) < "
                    "(SELECT created_at, id FROM batches WHERE id = $2) ORDER BY created_at DESC, id DESC LIMIT $3"
                )
                ids = [r[0] for r in await conn.fetch(sql, team, after, limit)]
            found = [await self._read_batch(conn, i, team) for i in ids]
            return [b for b in found if b is not None]

    async def cancel(self, batch_id: str, team: str, now: float) -> Batch | None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM batches WHERE id = $1 FOR UPDATE", batch_id)
            batch = await self._read_batch(conn, batch_id, team)
            if batch is None or batch.status not in (BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS):
                return batch
            times = orjson.dumps({**batch.times, "cancelling_at": now}).decode()
            await conn.execute(q.numbered(q.CANCEL), times, batch_id, team, batch.status.value)
            return await self._read_batch(conn, batch_id, team)

    async def claim(self, owner: str, limit: int, now: float, lease_s: float) -> list[Job]:
        rows: list[Any] = []
        if now - self._expired_checked_at >= _EXPIRED_EVERY_S:
            self._expired_checked_at = now
            rows = list(await self.pool.fetch(_CLAIM_EXPIRED, owner, now + lease_s, now, limit))
        if len(rows) < limit:
            rows += await self.pool.fetch(_CLAIM_WAITING, owner, now + lease_s, now, limit - len(rows))
        # attempts was raised by the claim itself: job_from_row counts this run, so undo the +1 here
        jobs = [q.job_from_row((*tuple(r)[:7], int(r[7]) - 1, *tuple(r)[8:])) for r in rows]
        return sorted(jobs, key=lambda j: (j.enqueued_at, j.line))

    async def finish(self, job: Job, result: JobResult, now: float) -> bool:
        return _count(await self.pool.execute(q.numbered(q.FINISH), *q.finish_values(job, result, now))) > 0

    async def defer(self, job: Job, request_id: str, not_before: float) -> None:
        await self.pool.execute(q.numbered(q.DEFER), request_id, not_before, job.id)

    async def finalize(self, now: float) -> list[str]:
        ids = [r[0] for r in await self.pool.fetch(q.numbered(q.CLOSABLE.format(only="")), now, now)]
        closed = []
        for batch_id in ids:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT 1 FROM batches WHERE id = $1 FOR UPDATE", batch_id)
                if await self._close(conn, batch_id, now):
                    closed.append(batch_id)
        return closed

    async def _close(self, conn: Any, batch_id: str, now: float) -> bool:
        if await conn.fetchrow(q.numbered(q.CLOSABLE.format(only="AND b.id = ?")), batch_id, now, now) is None:
            return False
        batch = await self._read_batch(conn, batch_id, None)
        assert batch is not None
        status, code, message = close_plan(batch, now)
        await conn.execute(q.numbered(q.CLOSE_LEFTOVERS), now, code, message, batch_id)
        rows = [tuple(r) for r in await conn.fetch(q.numbered(q.DONE_JOBS), batch_id)]
        output, errors = q.result_files(rows)
        update = result_files(batch, output, errors, now)
        for file, content in update.files:
            await conn.execute(q.numbered(q.FILE_INSERT), *q.file_row(file, content))
        times = orjson.dumps({**batch.times, "finalizing_at": now, update.stamp(status): now}).decode()
        values = (status.value, times, update.output_id, update.error_id, now, batch_id)
        await conn.execute(q.numbered(q.CLOSE_BATCH), *values)
        return True

    async def job(self, job_id: str, team: str) -> JobView | None:
        row = await self.pool.fetchrow(q.numbered(q.JOB_VIEW), job_id, team)
        return None if row is None else q.job_view_from_row(tuple(row))

    async def depth(self, now: float) -> list[BatchDepth]:
        return [q.depth_from_row(tuple(r)) for r in await self.pool.fetch(q.DEPTH)]

    async def purge(self, batch_id: str | None, now: float) -> int:
        if batch_id is None:
            return _count(await self.pool.execute(q.numbered(q.PURGE.format(only="")), now))
        return _count(await self.pool.execute(q.numbered(q.PURGE.format(only="AND batch_id = ?")), now, batch_id))

    async def queued_realtime(self, team: str) -> int:
        return int(await self.pool.fetchval(q.numbered(q.QUEUED_REALTIME), team))

    async def due_callbacks(self, now: float, limit: int, lease_s: float) -> list[DueCallback]:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_DUE_CALLBACKS, now, limit)
            await conn.executemany(q.numbered(q.CLAIM_CALLBACK), [(now + lease_s, r[0]) for r in rows])
        return [DueCallback(r[0], r[1], r[2], int(r[3]) + 1) for r in rows]

    async def callback_result(self, job_id: str, retry_at: float | None, now: float, error: str | None) -> None:
        await self.pool.execute(q.numbered(q.CALLBACK_RESULT), *q.callback_result_values(job_id, retry_at, now, error))
