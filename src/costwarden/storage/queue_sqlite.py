"""The batch queue in SQLite (the default; the ledger's file or its own), on one worker thread.

Every change is one `BEGIN IMMEDIATE` transaction, so a claim, a result or a close is either
whole on disk or absent after a crash. One gateway drains a SQLite queue (leases still expire,
so jobs a killed gateway held run again after its restart).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

from costwarden.domain.batch import Batch, BatchDepth, BatchFile, BatchStatus, Job, JobResult, JobView
from costwarden.domain.batch_files import FileQuery, Pruned, within_bytes
from costwarden.domain.batch_input import LineError
from costwarden.domain.deferral import DueCallback
from costwarden.storage import queue_files as f
from costwarden.storage import queue_sql as q
from costwarden.storage.queue_close import close_plan, result_files
from costwarden.storage.sqlite_conn import open_wal, sqlite_path

T = TypeVar("T")


class SQLiteQueue:
    """BatchStore and JobQueue over one SQLite file (WAL)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="costwarden-queue")
        self._conn: sqlite3.Connection | None = None

    @classmethod
    def from_url(cls, url: str) -> SQLiteQueue:
        return cls(sqlite_path(url))

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            self._conn = open_wal(self.path)
        return fn(self._conn)

    async def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                value = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return value

        return await self._run(run)

    async def open(self) -> None:
        def has_finished(conn: sqlite3.Connection) -> bool:
            return any(row[1] == "finished_at" for row in conn.execute("PRAGMA table_info(batches)"))

        def upgrade(conn: sqlite3.Connection) -> None:  # a queue made before retention (f.ADD_FINISHED)
            if not has_finished(conn):  # again under the write lock: another process may have added it
                conn.execute(f.ADD_FINISHED)
                conn.execute(f.BACKFILL_FINISHED)

        await self._run(lambda c: c.executescript(q.SCHEMA.format(blob="BLOB")))
        if not await self._run(has_finished):
            await self._tx(upgrade)
        await self._run(lambda c: c.execute(f.FINISHED_INDEX))

    async def close(self) -> None:
        def shut(conn: sqlite3.Connection) -> None:
            conn.close()
            self._conn = None

        if self._conn is not None:
            await self._run(shut)
        self._executor.shutdown(wait=True)

    async def put_file(self, file: BatchFile, content: bytes) -> None:
        await self._tx(lambda c: c.execute(q.FILE_INSERT, q.file_row(file, content)))

    async def file(self, file_id: str, team: str) -> tuple[BatchFile, bytes] | None:
        def read(conn: sqlite3.Connection) -> tuple[BatchFile, bytes] | None:
            sql = f"SELECT {q.FILE_COLUMNS}, content FROM batch_files WHERE id = ? AND team = ?"
            row = conn.execute(sql, (file_id, team)).fetchone()
            return None if row is None else (q.file_from_row(row), bytes(row[6]))

        return await self._run(read)

    async def files(self, team: str, query: FileQuery) -> list[BatchFile]:
        sql, values = f.file_list(team, query, query.limit)
        return [q.file_from_row(r) for r in await self._run(lambda c: c.execute(sql, values).fetchall())]

    async def delete_file(self, file_id: str, team: str) -> bool:
        return await self._tx(lambda c: c.execute(f.DELETE_FILE, (file_id, team)).rowcount > 0)

    async def prune_finished(self, before: float, limit: int) -> Pruned:
        def write(conn: sqlite3.Connection) -> Pruned:
            batches = jobs = files = 0
            for batch_id, output_id, error_id in conn.execute(f.FINISHED, (before, limit)).fetchall():
                room = limit - batches - jobs
                if room <= 0:
                    break
                conn.execute(f.DELETE_CALLBACKS, (batch_id, room))
                gone = conn.execute(f.DELETE_JOBS, (batch_id, room)).rowcount
                jobs += gone
                if gone < room:  # its last jobs went: the batch and its result files go too
                    for file_id in (output_id, error_id):
                        files += 0 if file_id is None else conn.execute(f.DELETE_FILE_ID, (file_id,)).rowcount
                    conn.execute(f.DELETE_BATCH, (batch_id,))
                    batches += 1
            if batches or jobs:
                return Pruned(batches, jobs, files)
            uploads = within_bytes(conn.execute(f.STALE_UPLOADS, (before, limit)).fetchall())
            conn.executemany(f.DELETE_FILE_ID, [(i,) for i in uploads])
            return Pruned(files=len(uploads))

        return await self._tx(write)

    async def create_batch(
        self, batch: Batch, jobs: Sequence[Job], errors: Sequence[LineError], callback: str | None = None
    ) -> None:
        error_ids = [f"{batch.id}-line-{e.line}" for e in errors]

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(q.BATCH_INSERT, q.batch_row(batch))
            conn.executemany(q.JOB_INSERT, q.job_rows(batch, jobs, errors, error_ids))
            if callback is not None:
                conn.executemany(q.CALLBACK_INSERT, [(job.id, callback, batch.created_at) for job in jobs])

        await self._tx(write)

    def _read_batch(self, conn: sqlite3.Connection, batch_id: str, team: str) -> Batch | None:
        sql = f"SELECT {q.BATCH_COLUMNS} FROM batches WHERE id = ? AND team = ?"
        row = conn.execute(sql, (batch_id, team)).fetchone()
        if row is None:
            return None
        return q.batch_from_row(row, conn.execute(q.COUNTS, (batch_id,)).fetchone())

    async def batch(self, batch_id: str, team: str) -> Batch | None:
        return await self._run(lambda c: self._read_batch(c, batch_id, team))

    async def batches(self, team: str, after: str | None, limit: int) -> list[Batch]:
        def read(conn: sqlite3.Connection) -> list[Batch]:
            sql = "SELECT id FROM batches WHERE team = ?"
            params: list[Any] = [team]
            if after is not None:
                sql += " AND (created_at, id) < (SELECT created_at, id FROM batches WHERE id = ?)"
                params.append(after)
            ids = [r[0] for r in conn.execute(sql + " ORDER BY created_at DESC, id DESC LIMIT ?", (*params, limit))]
            return [b for b in (self._read_batch(conn, i, team) for i in ids) if b is not None]

        return await self._run(read)

    async def cancel(self, batch_id: str, team: str, now: float) -> Batch | None:
        def write(conn: sqlite3.Connection) -> Batch | None:
            batch = self._read_batch(conn, batch_id, team)
            if batch is None or batch.status not in (BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS):
                return batch
            times = orjson.dumps({**batch.times, "cancelling_at": now}).decode()
            conn.execute(q.CANCEL, (times, batch_id, team, batch.status.value))
            return self._read_batch(conn, batch_id, team)

        return await self._tx(write)

    async def claim(self, owner: str, limit: int, now: float, lease_s: float) -> list[Job]:
        def write(conn: sqlite3.Connection) -> list[Job]:
            rows = conn.execute(f"{q.JOB_SELECT} WHERE {q.EXPIRED} LIMIT ?", (now, limit)).fetchall()
            if len(rows) < limit:
                rows += conn.execute(f"{q.JOB_SELECT} WHERE {q.WAITING} LIMIT ?", (now, limit - len(rows))).fetchall()
            conn.executemany(
                "UPDATE batch_jobs SET state = 'leased', owner = ?, lease_until = ?, attempts = attempts + 1 "
                "WHERE id = ?",
                [(owner, now + lease_s, r[0]) for r in rows],
            )
            return [q.job_from_row(r) for r in rows]

        return await self._tx(write)

    async def finish(self, job: Job, result: JobResult, now: float) -> bool:
        return await self._tx(lambda c: c.execute(q.FINISH, q.finish_values(job, result, now)).rowcount > 0)

    async def defer(self, job: Job, request_id: str, not_before: float) -> None:
        await self._tx(lambda c: c.execute(q.DEFER, (request_id, not_before, job.id)))

    async def finalize(self, now: float) -> list[str]:
        closable = q.CLOSABLE.format(only="")
        ids = [r[0] for r in await self._run(lambda c: c.execute(closable, (now, now)).fetchall())]
        closed = []
        for batch_id in ids:
            if await self._tx(lambda c, b=batch_id: self._close(c, b, now)):  # type: ignore[misc]
                closed.append(batch_id)
        return closed

    def _close(self, conn: sqlite3.Connection, batch_id: str, now: float) -> bool:
        if conn.execute(q.CLOSABLE.format(only="AND b.id = ?"), (batch_id, now, now)).fetchone() is None:
            return False  # closed meanwhile, or a job was leased again
        row = conn.execute(f"SELECT {q.BATCH_COLUMNS} FROM batches WHERE id = ?", (batch_id,)).fetchone()
        batch = q.batch_from_row(row, (0, 0, 0))
        status, code, message = close_plan(batch, now)
        conn.execute(q.CLOSE_LEFTOVERS, (now, code, message, batch_id))
        output, errors = q.result_files(conn.execute(q.DONE_JOBS, (batch_id,)).fetchall())
        update = result_files(batch, output, errors, now)
        for file, content in update.files:
            conn.execute(q.FILE_INSERT, q.file_row(file, content))
        times = orjson.dumps({**batch.times, "finalizing_at": now, update.stamp(status): now}).decode()
        conn.execute(q.CLOSE_BATCH, (status.value, times, update.output_id, update.error_id, now, batch_id))
        return True

    async def job(self, job_id: str, team: str) -> JobView | None:
        row = await self._run(lambda c: c.execute(q.JOB_VIEW, (job_id, team)).fetchone())
        return None if row is None else q.job_view_from_row(row)

    async def depth(self, now: float) -> list[BatchDepth]:
        return [q.depth_from_row(r) for r in await self._run(lambda c: c.execute(q.DEPTH).fetchall())]

    async def purge(self, batch_id: str | None, now: float) -> int:
        only = "" if batch_id is None else "AND batch_id = ?"
        params: tuple[Any, ...] = (now,) if batch_id is None else (now, batch_id)
        return await self._tx(lambda c: int(c.execute(q.PURGE.format(only=only), params).rowcount))

    async def queued_realtime(self, team: str) -> int:
        return int((await self._run(lambda c: c.execute(q.QUEUED_REALTIME, (team,)).fetchone()))[0])

    async def due_callbacks(self, now: float, limit: int, lease_s: float) -> list[DueCallback]:
        def write(conn: sqlite3.Connection) -> list[DueCallback]:
            rows = conn.execute(q.DUE_CALLBACKS, (now, limit)).fetchall()
            conn.executemany(q.CLAIM_CALLBACK, [(now + lease_s, r[0]) for r in rows])
            return [DueCallback(r[0], r[1], r[2], int(r[3]) + 1) for r in rows]

        return await self._tx(write)

    async def callback_result(self, job_id: str, retry_at: float | None, now: float, error: str | None) -> None:
        await self._tx(lambda c: c.execute(q.CALLBACK_RESULT, q.callback_result_values(job_id, retry_at, now, error)))
