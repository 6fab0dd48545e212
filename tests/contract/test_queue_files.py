"""Batch files listed and deleted, and the queue's retention, on SQLite and PostgreSQL.

A team lists only its own files, in OpenAI's order and pages; a deleted input file leaves its batch
running; retention deletes finished batches with their jobs, callbacks and files, in steps of at
most `limit` rows, and keeps everything an unfinished or recent batch still needs.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import asyncpg

from costwarden.domain.batch import COMPLETION_WINDOW_S, BatchFile, BatchStatus
from costwarden.domain.batch_files import FileQuery, Pruned
from costwarden.domain.batch_input import LineError
from costwarden.ports import BatchBackend
from costwarden.services.retention import RetentionLoop, prune_queue
from costwarden.storage.queue_postgres import PostgresQueue
from costwarden.storage.queue_sqlite import SQLiteQueue
from tests.contract.test_job_queue import LEASE, T0, lines, make_batch, make_jobs, ok

DAY = 86_400.0


def upload(file_id: str, created: float, team: str = "search", purpose: str = "batch") -> BatchFile:
    return BatchFile(file_id, team, purpose, f"{file_id}.jsonl", 3, created)


async def test_a_team_lists_its_own_files_newest_first_paged_and_filtered(queue: BatchBackend) -> None:
    mine = [upload(f"file-{i}", T0 + i, purpose="batch_output" if i % 2 else "batch") for i in range(5)]
    mine.append(upload("file-3b", T0 + 3))  # same second as file-3: the id breaks the tie
    for file in [*mine, upload("file-theirs", T0 + 2, team="ads")]:
        await queue.put_file(file, b"abc")

    async def ids(query: FileQuery, team: str = "search") -> list[str]:
        return [f.id for f in await queue.files(team, query)]

    assert await ids(FileQuery()) == ["file-4", "file-3b", "file-3", "file-2", "file-1", "file-0"]
    assert await ids(FileQuery(ascending=True)) == ["file-0", "file-1", "file-2", "file-3", "file-3b", "file-4"]
    assert await ids(FileQuery(limit=2)) == ["file-4", "file-3b"]
    assert await ids(FileQuery(after="file-3b", limit=2)) == ["file-3", "file-2"]
    assert await ids(FileQuery(after="file-3", ascending=True)) == ["file-3b", "file-4"]
    assert await ids(FileQuery(purpose="batch_output")) == ["file-3", "file-1"]
    assert await ids(FileQuery(purpose="batch", after="file-4")) == ["file-3b", "file-2", "file-0"]
    assert await ids(FileQuery(purpose="fine-tune")) == []
    assert await ids(FileQuery(), team="ads") == ["file-theirs"]
    assert await ids(FileQuery(after="file-theirs")) == []  # another team's id is no cursor
    assert await ids(FileQuery(after="file-nope")) == []
    [listed] = await queue.files("search", FileQuery(limit=1))
    assert listed == mine[4]


async def test_a_deleted_input_file_is_gone_and_its_batch_runs_on(queue: BatchBackend) -> None:
    await queue.put_file(upload("file-in", T0), b"lines")
    batch = make_batch()
    await queue.create_batch(batch, make_jobs(batch, 2), [])
    assert not await queue.delete_file("file-in", "ads")  # another team's: refused, kept
    assert await queue.file("file-in", "search") is not None
    assert await queue.delete_file("file-in", "search")
    assert await queue.file("file-in", "search") is None
    assert await queue.files("search", FileQuery()) == []
    assert not await queue.delete_file("file-in", "search")  # once
    for job in await queue.claim("w", 10, T0 + 1, LEASE):
        assert await queue.finish(job, ok(job), T0 + 2)
    assert await queue.finalize(T0 + 3) == [batch.id]
    done = await queue.batch(batch.id, "search")
    assert done is not None and done.status is BatchStatus.COMPLETED and done.input_file_id == "file-in"
    assert [x["custom_id"] for x in await lines(queue, done.output_file_id)] == ["c0", "c1"]
    assert await queue.delete_file(done.output_file_id or "", "search")  # a result file may go too
    assert await queue.file(done.output_file_id or "", "search") is None


async def finished(queue: BatchBackend, batch_id: str, created: float, jobs: int, callback: str | None = None) -> None:
    """A batch created from `file-<batch_id>` (uploaded with it), all `jobs` run (one of them failed: an
    error file too), closed a second after its creation."""
    await queue.put_file(upload(f"file-{batch_id}", created), b"lines")
    batch = replace(make_batch(batch_id, created=created), input_file_id=f"file-{batch_id}")
    await queue.create_batch(batch, make_jobs(batch, jobs), [LineError(jobs + 1, None, "invalid_json_line", "x")],
                             callback)  # fmt: skip
    for job in await queue.claim("w", jobs, created, LEASE):
        await queue.finish(job, ok(job), created)
    assert await queue.finalize(created + 1) == [batch_id]


async def test_retention_deletes_finished_batches_with_their_jobs_and_files_in_bounded_steps(
    queue: BatchBackend,
) -> None:
    await finished(queue, "batch_old", T0, 5)
    await finished(queue, "batch_rt", T0 + 10, 1, callback="https://example.com/hook")
    failed = replace(make_batch("batch_failed", created=T0 + 20), status=BatchStatus.FAILED, input_file_id="")
    await queue.create_batch(failed, (), ())  # failed validation: finished when created, no jobs
    await finished(queue, "batch_recent", T0 + 5 * DAY, 2)
    await queue.put_file(upload("file-running", T0), b"lines")  # old, but a batch still running reads it
    running = replace(make_batch("batch_running", created=T0 + 30), input_file_id="file-running")
    await queue.create_batch(running, make_jobs(running, 3), [])
    await queue.put_file(upload("file-unused", T0 + 40), b"lines")  # uploaded, never used
    await queue.put_file(upload("file-new", T0 + 5 * DAY), b"lines")
    old = await queue.batch("batch_old", "search")
    assert old is not None and old.output_file_id and old.error_file_id
    assert [c.job_id for c in await queue.due_callbacks(T0 + 100, 10, 30)] == ["batch_rt-job-0"]
    await queue.callback_result("batch_rt-job-0", T0 + 200, T0 + 100, "timeout")  # due again at T0 + 200

    before = T0 + 2 * DAY
    steps = []
    while (step := await queue.prune_finished(before, 2)).total:
        steps.append(step)
    assert all(s.batches + s.jobs <= 2 and s.files <= 2 * s.batches for s in steps if s.jobs or s.batches)
    assert all(s.files <= 2 for s in steps)
    # batch_old: 6 job rows (5 jobs and a bad line) then the batch with 2 result files; batch_rt: 2 job rows, the
    # batch and its output and error file; batch_failed; then the uploads no kept batch was created from.
    assert sum(steps, Pruned()) == Pruned(batches=3, jobs=8, files=4 + 3)
    for gone in ("batch_old", "batch_rt", "batch_failed"):
        assert await queue.batch(gone, "search") is None
    assert await queue.job("batch_old-job-0", "search") is None
    assert await queue.file(old.output_file_id, "search") is None
    assert await queue.file(old.error_file_id, "search") is None
    assert await queue.due_callbacks(T0 + 300, 10, 30) == []  # the job's callback went with it
    kept = {f.id for f in await queue.files("search", FileQuery())}
    recent = await queue.batch("batch_recent", "search")
    assert recent is not None and recent.status is BatchStatus.COMPLETED
    assert kept == {"file-running", "file-batch_recent", "file-new", recent.output_file_id, recent.error_file_id}
    assert recent.counts.total == 3
    assert len(await queue.claim("w", 10, T0 + 5 * DAY, LEASE)) == 3  # the running batch runs on
    assert await prune_queue(queue, before, 2) == Pruned()  # nothing more, and a second round finds nothing


async def test_a_queue_made_before_retention_gets_finished_times_at_open(queue: BatchBackend) -> None:
    await finished(queue, "batch_legacy", T0, 1)
    expires = T0 + COMPLETION_WINDOW_S
    drop = ("DROP INDEX batches_finished", "ALTER TABLE batches DROP COLUMN finished_at")
    if isinstance(queue, SQLiteQueue):
        with sqlite3.connect(queue.path) as conn:
            for statement in drop:
                conn.execute(statement)
        again: BatchBackend = SQLiteQueue(queue.path)
    else:
        assert isinstance(queue, PostgresQueue)
        conn = await asyncpg.connect(queue.dsn)
        for statement in drop:
            await conn.execute(statement)
        await conn.close()
        again = PostgresQueue(queue.dsn)
    await again.open()
    try:
        assert await again.prune_finished(expires - 1, 10) == Pruned()  # counted from its window's end
        assert (await again.prune_finished(expires + 1, 10)).batches == 1
        assert await again.batch("batch_legacy", "search") is None
    finally:
        await again.close()


async def test_only_the_leading_gateway_prunes_the_queue(queue: BatchBackend) -> None:
    await finished(queue, "batch_old", T0, 2)
    now, leads = T0 + 3 * DAY, {"value": False}

    async def lead(at: float) -> bool:
        assert at == now
        return leads["value"]

    async def prune(before: float) -> int:
        return (await prune_queue(queue, before, 100)).total

    loop = RetentionLoop(prune, lead, days=2, every_s=3600, what="batch queue rows", clock=lambda: now)
    assert await loop.tick() == 0  # a follower: nothing goes
    assert await queue.batch("batch_old", "search") is not None
    leads["value"] = True
    assert await loop.tick() == 1 + 3 + 3  # the batch, its 3 job rows, its 2 result files and its input file
    assert await queue.batch("batch_old", "search") is None
