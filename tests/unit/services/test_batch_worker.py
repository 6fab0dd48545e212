"""The batch worker over a real SQLite queue, with the job runner replaced by a function: windows,
caps, deferral, and a run that dies half-way (the job runs again under the same request id)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from costwarden.config.batch import BatchConfig
from costwarden.domain.batch import COMPLETION_WINDOW_S, Batch, BatchStatus, Job, JobResult
from costwarden.domain.keys import KeyIdentity
from costwarden.protocols.errors import GatewayError
from costwarden.services.batch import BatchService
from costwarden.services.batch_worker import BatchWorker
from costwarden.storage.queue_sqlite import SQLiteQueue


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[SQLiteQueue]:
    adapter = SQLiteQueue(str(tmp_path / "queue.db"))
    await adapter.open()
    yield adapter
    await adapter.close()


async def enqueue(queue: SQLiteQueue, n: int, now: float) -> str:
    batch = Batch("batch_w", "search", "k", "/v1/chat/completions", "file-in", BatchStatus.IN_PROGRESS, now,
                  now + COMPLETION_WINDOW_S)  # fmt: skip
    jobs = [Job(f"j{i}", batch.id, "k", batch.endpoint, f"c{i}", b"{}", f"rid{i}", 0, now, i + 1) for i in range(n)]
    await queue.create_batch(batch, jobs, [])
    return batch.id


async def until(check: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def status_of(queue: SQLiteQueue, batch_id: str) -> BatchStatus:
    batch = await queue.batch(batch_id, "search")
    assert batch is not None
    return batch.status


def config(**changes: object) -> BatchConfig:
    return BatchConfig.model_validate({"poll_seconds": 0.02, "lease_seconds": 1, "retry_seconds": 0.05, **changes})


async def test_drains_under_the_concurrency_cap(queue: SQLiteQueue) -> None:
    batch_id = await enqueue(queue, 30, time.time())
    running, peak, ran = 0, 0, []

    async def run(job: Job) -> JobResult:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        ran.append(job.id)
        return JobResult(200, b"{}", job.request_id)

    worker = BatchWorker(queue, run, config(concurrency=3, rate_per_second=10_000), "w")
    worker.start()
    try:
        await until(lambda: worker.counts.done == 30)
        await until(lambda: worker.status is not None and worker.status.batches == ())
    finally:
        await worker.stop()
    assert peak == 3 and sorted(ran) == sorted(f"j{i}" for i in range(30))
    assert await status_of(queue, batch_id) is BatchStatus.COMPLETED


async def test_the_rate_cap_spaces_job_starts(queue: SQLiteQueue) -> None:
    await enqueue(queue, 11, time.time())
    starts: list[float] = []

    async def run(job: Job) -> JobResult:
        starts.append(time.monotonic())
        return JobResult(200, b"{}", job.request_id)

    worker = BatchWorker(queue, run, config(concurrency=50, rate_per_second=50), "w")
    worker.start()
    try:
        await until(lambda: worker.counts.done == 11)
    finally:
        await worker.stop()
    assert starts[-1] - starts[0] >= 10 / 50 * 0.95  # 11 starts at 50/s take at least 0.2 s


async def test_nothing_runs_outside_the_windows(queue: SQLiteQueue) -> None:
    clock = [86400.0 * 20_000 + 12 * 3600]  # noon UTC
    await enqueue(queue, 2, clock[0])
    ran: list[str] = []

    async def run(job: Job) -> JobResult:
        ran.append(job.id)
        return JobResult(200, b"{}", job.request_id)

    worker = BatchWorker(queue, run, config(windows=["22:00-06:00"]), "w", clock=lambda: clock[0])
    worker.start()
    try:
        await asyncio.sleep(0.2)
        assert ran == []
        clock[0] += 10.5 * 3600  # 22:30
        await until(lambda: worker.counts.done == 2)
    finally:
        await worker.stop()


async def test_a_refused_job_waits_under_a_new_request_id_and_never_fails(queue: SQLiteQueue) -> None:
    batch_id = await enqueue(queue, 1, time.time())
    seen: list[str] = []

    async def run(job: Job) -> JobResult | None:
        seen.append(job.request_id)
        if len(seen) < 3:
            return None  # admission said "not now"
        return JobResult(200, b"{}", job.request_id)

    worker = BatchWorker(queue, run, config(), "w")
    worker.start()
    try:
        await until(lambda: worker.counts.done == 1)
    finally:
        await worker.stop()
    assert worker.counts.deferred == 2 and worker.counts.failed == 0
    assert len(set(seen)) == 3 and seen[0] == "rid0"
    batch = await queue.batch(batch_id, "search")
    assert batch is not None and batch.counts.completed == 1


async def test_a_run_that_dies_is_retried_under_the_same_request_id(queue: SQLiteQueue) -> None:
    await enqueue(queue, 1, time.time())
    seen: list[str] = []

    async def run(job: Job) -> JobResult:
        seen.append(job.request_id)
        if len(seen) == 1:
            raise RuntimeError("the gateway died here")  # nothing finished: the lease must expire
        return JobResult(200, b"{}", job.request_id)

    worker = BatchWorker(queue, run, config(lease_seconds=1), "w")
    worker.start()
    try:
        await until(lambda: worker.counts.done == 1, within=15)
    finally:
        await worker.stop()
    assert seen == ["rid0", "rid0"]


async def test_one_realtime_request_queued_runs_and_is_read_back(queue: SQLiteQueue) -> None:
    service = BatchService(queue, config())
    who = KeyIdentity("k", "search", "ranking", "prod")
    with pytest.raises(GatewayError) as bad:
        await service.submit_one(who, "/v1/chat/completions", b'{"messages": []}', None, time.time())
    assert bad.value.status == 400 and bad.value.code == "missing_model"
    job = await service.submit_one(who, "/v1/chat/completions", b'{"model": "chat", "messages": []}', None, time.time())
    assert (await service.job(who, job.id)).to_json()["status"] == "queued"

    async def run(claimed: Job) -> JobResult:
        assert claimed.id == job.id and claimed.request_id == job.request_id and claimed.body == job.body
        return JobResult(200, b'{"answer": 42}', claimed.request_id)

    worker = BatchWorker(queue, run, config(), "w")
    worker.start()
    try:
        await until(lambda: worker.counts.done == 1)
    finally:
        await worker.stop()
    view = (await service.job(who, job.id)).to_json()
    assert view["status"] == "completed" and view["response"]["body"] == {"answer": 42}
    with pytest.raises(GatewayError) as other:
        await service.job(KeyIdentity("k2", "ads", "ctr", "prod"), job.id)
    assert other.value.status == 404


async def test_a_team_may_queue_at_most_max_queued_per_team_realtime_requests(queue: SQLiteQueue) -> None:
    service = BatchService(queue, config(max_queued_per_team=2))
    search, ads = KeyIdentity("k", "search", "ranking", "prod"), KeyIdentity("k2", "ads", "ctr", "prod")
    body = b'{"model": "chat", "messages": []}'
    first = await service.submit_one(search, "/v1/chat/completions", body, None, time.time())
    await service.submit_one(search, "/v1/chat/completions", body, None, time.time())
    with pytest.raises(GatewayError) as full:
        await service.submit_one(search, "/v1/chat/completions", body, None, time.time())
    assert (full.value.status, full.value.code) == (429, "queue_full")
    await service.submit_one(ads, "/v1/chat/completions", body, None, time.time())  # another team's room
    claimed = [j for j in await queue.claim("w", 10, time.time(), 30) if j.id == first.id]
    await queue.finish(claimed[0], JobResult(200, b"{}", first.request_id), time.time())
    await queue.finalize(time.time())  # the first one ran: room for one more
    await service.submit_one(search, "/v1/chat/completions", body, None, time.time())


async def test_stopping_lets_the_jobs_in_flight_finish(queue: SQLiteQueue) -> None:
    batch_id = await enqueue(queue, 2, time.time())
    started = asyncio.Event()

    async def run(job: Job) -> JobResult:
        started.set()
        await asyncio.sleep(0.3)  # still running when the gateway is told to stop
        return JobResult(200, b"{}", job.request_id)

    worker = BatchWorker(queue, run, config(concurrency=2), "w")
    worker.start()
    await started.wait()
    await worker.stop()
    assert worker.counts.done == 2
    batch = await queue.batch(batch_id, "search")
    assert batch is not None and batch.counts.completed == 2


class CountingQueue(SQLiteQueue):
    """The real SQLite queue, counting the worker's claims (its polls); `gate`, when set, holds a
    claim's answer back until it opens (a slow database)."""

    claims = 0
    gate: asyncio.Event | None = None

    async def claim(self, owner: str, limit: int, now: float, lease_s: float) -> list[Job]:
        self.claims += 1
        jobs = await super().claim(owner, limit, now, lease_s)
        if self.gate is not None:
            await self.gate.wait()
        return jobs


async def test_an_idle_worker_sleeps_until_a_job_is_queued_here(tmp_path: Path) -> None:
    """No batch anywhere: the worker does not poll every `poll_seconds`; a job queued on this
    gateway wakes it at once, long before its idle poll."""
    queue = CountingQueue(str(tmp_path / "queue.db"))
    await queue.open()
    settings = config(idle_poll_seconds=60)
    worker = BatchWorker(queue, ok, settings, "w")
    worker.start()
    try:
        await until(lambda: worker.status is not None)
        await asyncio.sleep(20 * settings.poll_seconds)  # twenty polls' time
        assert queue.claims <= 2, queue.claims  # the first look, and one more as the closer saw none
        await queue_one(BatchService(queue, settings, worker.notify))
        await until(lambda: worker.counts.done == 1, within=5)
    finally:
        await worker.stop()
        await queue.close()


async def test_an_idle_worker_still_finds_jobs_queued_by_another_gateway(queue: SQLiteQueue) -> None:
    worker = BatchWorker(queue, ok, config(idle_poll_seconds=0.2), "w")  # no event: nothing wakes it
    worker.start()
    try:
        await until(lambda: worker.status is not None and not worker._busy())
        batch_id = await enqueue(queue, 2, time.time())  # as another gateway on the same database would
        await until(lambda: worker.counts.done == 2, within=5)
        await until(lambda: worker.status is not None and worker.status.batches == (), within=5)
    finally:
        await worker.stop()
    assert await status_of(queue, batch_id) is BatchStatus.COMPLETED


async def test_a_job_queued_while_the_worker_claims_is_not_left_waiting(tmp_path: Path) -> None:
    """The wake-up of a job queued during a claim that found nothing is not lost (the event was
    cleared after the claim: the job then waited a whole poll)."""
    queue = CountingQueue(str(tmp_path / "queue.db"))
    await queue.open()
    queue.gate = asyncio.Event()
    settings = config(poll_seconds=60, idle_poll_seconds=60)
    worker = BatchWorker(queue, ok, settings, "w")
    worker.start()
    try:
        await until(lambda: queue.claims == 1)  # its first claim found nothing, and is slow to say so
        await queue_one(BatchService(queue, settings, worker.notify))
        queue.gate.set()
        await until(lambda: worker.counts.done == 1, within=5)
    finally:
        await worker.stop()
        await queue.close()


async def test_stopping_ends_the_loops_even_as_they_are_woken(queue: SQLiteQueue) -> None:
    """Stopped as a job is queued (the event set in the same turn): on Python 3.11 `wait_for`
    returned the event's result instead of raising the cancellation, and `stop()` never returned."""
    worker = BatchWorker(queue, ok, config(poll_seconds=60, idle_poll_seconds=60), "w")
    worker.start()
    await until(lambda: worker.status is not None and not worker._busy())
    await asyncio.sleep(0.05)  # both loops wait on their events now
    worker.notify()
    async with asyncio.timeout(5) as limit:
        await worker.stop()  # (a hung one was cancelled by the limit, and stop() swallowed that)
    assert not limit.expired()


async def queue_one(service: BatchService) -> None:
    """One realtime request queued through the service (the 202 path), as on this gateway."""
    who = KeyIdentity("k", "search", "ranking", "prod")
    await service.submit_one(who, "/v1/chat/completions", b'{"model": "chat", "messages": []}', None, time.time())


async def ok(job: Job) -> JobResult:
    return JobResult(200, b"{}", job.request_id)


class FinalizeBeforeTheLastJobEnds(SQLiteQueue):
    """Plays a race: the closer's `finalize` runs while the last job is still running, and its status
    read comes after that job ended (so nothing runs and nothing is queued any more)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.job_running = False
        self.finalizing = asyncio.Event()
        self.job_ended = asyncio.Event()
        self.raced = False

    async def finalize(self, now: float) -> list[str]:
        closed = await super().finalize(now)
        if self.job_running and not self.finalizing.is_set():
            self.finalizing.set()
            await self.job_ended.wait()
            self.raced = True
        return closed


async def test_a_batch_closes_at_once_when_its_last_job_ends_behind_the_closers_back(tmp_path: Path) -> None:
    """The last job ending between the closer's finalize and its status read once left the batch open
    for a whole idle poll (30 s by default)."""
    queue = FinalizeBeforeTheLastJobEnds(str(tmp_path / "queue.db"))
    await queue.open()
    batch_id = await enqueue(queue, 1, time.time())

    async def run(job: Job) -> JobResult:
        queue.job_running = True
        await queue.finalizing.wait()  # the closer has read the batch as still running
        return JobResult(200, b"{}", job.request_id)

    async def finished() -> None:
        await until(lambda: worker.counts.done == 1)
        await asyncio.sleep(0.05)  # the job's slot freed
        queue.job_ended.set()

    worker = BatchWorker(queue, run, config(idle_poll_seconds=60), "w")
    worker.start()
    ender = asyncio.create_task(finished())
    try:
        await until(lambda: worker.status is not None and worker.status.batches == ())
        assert queue.raced
        assert await status_of(queue, batch_id) is BatchStatus.COMPLETED
    finally:
        await worker.stop()
        await ender
        await queue.close()
