"""One suite for the batch queue (BatchStore + JobQueue), run against SQLite and PostgreSQL.

Each crash point of a job is a state the queue must get out of by itself: leased and never
finished (its gateway died), finished twice (a re-run after a crash), closed twice.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from costwarden.domain.batch import COMPLETION_WINDOW_S, Batch, BatchFile, BatchStatus, Job, JobResult
from costwarden.domain.batch_input import LineError
from costwarden.ports import BatchBackend
from costwarden.storage.queue_postgres import PostgresQueue
from costwarden.storage.queue_sqlite import SQLiteQueue

T0 = 1_800_000_000.0
LEASE = 30.0


def make_batch(batch_id: str = "batch_1", team: str = "search", created: float = T0) -> Batch:
    return Batch(
        id=batch_id, team=team, key_id="k1", endpoint="/v1/chat/completions", input_file_id="file-in",
        status=BatchStatus.IN_PROGRESS, created_at=created, expires_at=created + COMPLETION_WINDOW_S,
        times={"in_progress_at": created},
    )  # fmt: skip


def make_jobs(batch: Batch, n: int) -> list[Job]:
    return [
        Job(f"{batch.id}-job-{i}", batch.id, batch.key_id, batch.endpoint, f"c{i}", b'{"model":"chat"}',
            f"rid-{batch.id}-{i}", 0, batch.created_at, i + 1)
        for i in range(n)
    ]  # fmt: skip


def ok(job: Job) -> JobResult:
    return JobResult(200, orjson.dumps({"custom": job.custom_id}), job.request_id)


async def lines(queue: BatchBackend, file_id: str | None, team: str = "search") -> list[dict[str, Any]]:
    assert file_id is not None
    found = await queue.file(file_id, team)
    assert found is not None
    return [orjson.loads(x) for x in found[1].splitlines()]


async def test_files_belong_to_a_team(queue: BatchBackend) -> None:
    file = BatchFile("file-a", "search", "batch", "in.jsonl", 3, T0)
    await queue.put_file(file, b"abc")
    assert await queue.file("file-a", "search") == (file, b"abc")
    assert await queue.file("file-a", "ads") is None
    assert await queue.file("file-b", "search") is None


async def test_a_batch_runs_to_completion_with_its_files(queue: BatchBackend) -> None:
    batch = make_batch()
    jobs = make_jobs(batch, 3)
    await queue.create_batch(batch, jobs, [LineError(4, None, "invalid_json_line", "bad")])
    assert (await queue.batch(batch.id, "ads")) is None
    claimed = await queue.claim("w1", 10, T0 + 1, LEASE)
    assert [j.id for j in claimed] == [j.id for j in jobs] and all(j.attempts == 1 for j in claimed)
    assert [j.request_id for j in claimed] == [j.request_id for j in jobs]
    assert await queue.claim("w2", 10, T0 + 1, LEASE) == []  # all leased
    assert await queue.finalize(T0 + 2) == []  # jobs still running
    for job in claimed[:2]:
        assert await queue.finish(job, ok(job), T0 + 2)
    assert await queue.finish(claimed[2], JobResult(404, b'{"error": {}}', claimed[2].request_id), T0 + 2)
    got = await queue.batch(batch.id, "search")
    assert got is not None and got.counts.to_json() == {"total": 4, "completed": 2, "failed": 2}
    assert await queue.finalize(T0 + 3) == [batch.id]
    assert await queue.finalize(T0 + 4) == []  # closed once
    done = await queue.batch(batch.id, "search")
    assert done is not None and done.status is BatchStatus.COMPLETED
    assert done.times["completed_at"] == T0 + 3 and done.times["finalizing_at"] == T0 + 3
    output = await lines(queue, done.output_file_id)
    assert [x["custom_id"] for x in output] == ["c0", "c1"]
    errors = await lines(queue, done.error_file_id)
    assert [(x["custom_id"], x["error"]) for x in errors] == [
        ("c2", None),
        (None, {"code": "invalid_json_line", "message": "bad"}),
    ]


async def test_a_dead_workers_lease_expires_and_the_job_reruns_under_the_same_request_id(queue: BatchBackend) -> None:
    batch = make_batch()
    [job] = make_jobs(batch, 1)
    await queue.create_batch(batch, [job], [])
    [first] = await queue.claim("dead", 10, T0, LEASE)  # ... and the worker dies
    assert await queue.claim("alive", 10, T0 + LEASE - 1, LEASE) == []
    [again] = await queue.claim("alive", 10, T0 + LEASE + 1, LEASE)
    assert again.id == first.id and again.request_id == first.request_id and again.attempts == 2
    assert await queue.finish(again, ok(again), T0 + LEASE + 2)
    # The dead worker's late result (it was only slow) does not replace the first one.
    assert not await queue.finish(first, JobResult(500, b"{}", first.request_id), T0 + LEASE + 3)
    assert await queue.finalize(T0 + LEASE + 4) == [batch.id]
    done = await queue.batch(batch.id, "search")
    assert done is not None and done.error_file_id is None
    assert [x["custom_id"] for x in await lines(queue, done.output_file_id)] == ["c0"]


async def test_a_deferred_job_waits_and_runs_under_a_new_request_id(queue: BatchBackend) -> None:
    batch = make_batch()
    await queue.create_batch(batch, make_jobs(batch, 1), [])
    [job] = await queue.claim("w", 10, T0, LEASE)
    await queue.defer(job, "rid-next", T0 + 5)
    assert await queue.claim("w", 10, T0 + 4, LEASE) == []
    [again] = await queue.claim("w", 10, T0 + 5, LEASE)
    assert again.request_id == "rid-next" and again.attempts == 2


async def test_cancel_leaves_pending_jobs_unrun_and_waits_for_running_ones(queue: BatchBackend) -> None:
    batch = make_batch()
    await queue.create_batch(batch, make_jobs(batch, 3), [])
    [running] = await queue.claim("w", 1, T0, LEASE)
    cancelling = await queue.cancel(batch.id, "search", T0 + 1)
    assert cancelling is not None and cancelling.status is BatchStatus.CANCELLING
    assert await queue.cancel(batch.id, "ads", T0 + 1) is None
    assert await queue.claim("w", 10, T0 + 1, LEASE) == []
    assert await queue.finalize(T0 + 2) == []  # one job still running
    assert await queue.finish(running, ok(running), T0 + 3)
    assert await queue.finalize(T0 + 4) == [batch.id]
    done = await queue.batch(batch.id, "search")
    assert done is not None and done.status is BatchStatus.CANCELLED and done.times["cancelled_at"] == T0 + 4
    assert [x["custom_id"] for x in await lines(queue, done.output_file_id)] == ["c0"]
    errors = await lines(queue, done.error_file_id)
    expected = {("c1", "batch_cancelled"), ("c2", "batch_cancelled")}
    assert {(x["custom_id"], x["error"]["code"]) for x in errors} == expected
    again = await queue.cancel(batch.id, "search", T0 + 5)
    assert again is not None and again.status is BatchStatus.CANCELLED


async def test_a_batch_past_its_window_expires(queue: BatchBackend) -> None:
    batch = make_batch()
    await queue.create_batch(batch, make_jobs(batch, 2), [])
    [job] = await queue.claim("w", 1, T0, LEASE)
    await queue.finish(job, ok(job), T0 + 1)
    late = T0 + COMPLETION_WINDOW_S + 1
    assert await queue.finalize(late) == [batch.id]
    done = await queue.batch(batch.id, "search")
    assert done is not None and done.status is BatchStatus.EXPIRED and "expired_at" in done.times
    assert [x["error"]["code"] for x in await lines(queue, done.error_file_id)] == ["batch_expired"]


async def test_depth_purge_and_listing(queue: BatchBackend) -> None:
    first, second = make_batch("batch_a", created=T0), make_batch("batch_b", created=T0 + 10)
    await queue.create_batch(first, make_jobs(first, 3), [])
    await queue.create_batch(second, make_jobs(second, 2), [])
    await queue.claim("w", 1, T0 + 20, LEASE)
    depth = {d.batch_id: d for d in await queue.depth(T0 + 20)}
    assert (depth["batch_a"].pending, depth["batch_a"].leased, depth["batch_a"].oldest_enqueued_at) == (2, 1, T0)
    assert depth["batch_b"].pending == 2
    assert [b.id for b in await queue.batches("search", None, 10)] == ["batch_b", "batch_a"]
    assert [b.id for b in await queue.batches("search", "batch_b", 10)] == ["batch_a"]
    assert await queue.batches("ads", None, 10) == []
    assert await queue.purge("batch_b", T0 + 21) == 2
    assert await queue.purge(None, T0 + 21) == 2
    assert await queue.claim("w", 10, T0 + 22, LEASE) == []


async def test_two_workers_never_lease_the_same_job(queue: BatchBackend, tmp_path: Path) -> None:
    if isinstance(queue, SQLiteQueue):
        other: BatchBackend = SQLiteQueue(queue.path)
    else:
        assert isinstance(queue, PostgresQueue)
        other = PostgresQueue(queue.dsn)
    await other.open()
    try:
        batch = make_batch()
        await queue.create_batch(batch, make_jobs(batch, 200), [])
        seen: list[str] = []
        for _ in range(20):
            a, b = await asyncio.gather(queue.claim("a", 7, T0, LEASE), other.claim("b", 7, T0, LEASE))
            seen += [j.id for j in a + b]
        assert len(seen) == len(set(seen)) == 200
    finally:
        await other.close()


async def test_a_job_is_read_by_its_team_through_its_life(queue: BatchBackend) -> None:
    batch = make_batch()
    await queue.create_batch(batch, make_jobs(batch, 1), [LineError(2, "dup", "duplicate_custom_id", "again")])
    assert await queue.job(f"{batch.id}-job-0", "ads") is None
    assert await queue.job("nope", "search") is None
    pending = await queue.job(f"{batch.id}-job-0", "search")
    assert pending is not None and pending.to_json()["status"] == "queued" and pending.result is None
    [job] = await queue.claim("w", 1, T0, LEASE)
    running = await queue.job(job.id, "search")
    assert running is not None and running.to_json()["status"] == "running" and running.attempts == 1
    await queue.finish(job, ok(job), T0 + 1)
    done = await queue.job(job.id, "search")
    assert done is not None and done.finished_at == T0 + 1
    view = done.to_json()
    assert view["status"] == "completed" and view["response"]["request_id"] == job.request_id
    assert view["response"]["body"] == {"custom": "c0"}
    bad = await queue.job(f"{batch.id}-line-2", "search")
    assert bad is not None and bad.to_json()["status"] == "failed"
    assert bad.to_json()["error"] == {"code": "duplicate_custom_id", "message": "again"}


async def test_realtime_batches_count_until_closed(queue: BatchBackend) -> None:
    realtime = replace(make_batch("batch_rt"), input_file_id="")  # a batch of one queued by a 202
    await queue.create_batch(realtime, make_jobs(realtime, 1), [])
    await queue.create_batch(make_batch("batch_file"), make_jobs(make_batch("batch_file"), 3), [])  # Batch API
    assert (await queue.queued_realtime("search"), await queue.queued_realtime("ads")) == (1, 0)
    claimed = [j for j in await queue.claim("w", 10, T0, LEASE) if j.batch_id == "batch_rt"]
    assert await queue.finish(claimed[0], ok(claimed[0]), T0 + 1)
    assert await queue.queued_realtime("search") == 1  # done, not yet closed
    await queue.finalize(T0 + 2)
    assert await queue.queued_realtime("search") == 0
