"""The gateway's batch workers: drain the queue in off-peak windows, under a concurrency and a
rate cap, and close batches that have nothing left to run.

While the queue holds unfinished jobs (this gateway's or another's) the worker looks for jobs
every `poll_seconds`; while it holds none, every `idle_poll_seconds`, and a job queued on this
gateway (`BatchService`, through the shared `queued` event) wakes it at once.

Crash points, and why none loses or doubles a job (the ledger deduplicates on request id):
- killed after `claim`, before the request: the lease expires, the job runs later, same id.
- killed while the upstream answers, or after the record is spooled but before `finish`: the
  job runs again under the same request id, so the ledger keeps one record (the upstream may see
  the request twice: only jobs in flight at the crash, at most `concurrency` of them).
- killed after `finish`: the result is stored; `finalize` writes the files, in one transaction.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from costwarden.aio import cancel_and_wait, wait_event
from costwarden.config.batch import BatchConfig
from costwarden.domain.batch import Job, JobResult
from costwarden.domain.batch_window import seconds_until_open
from costwarden.ports import JobQueue
from costwarden.services.batch_queue import QueueStatus, queue_status
from costwarden.services.batch_run import next_request_id

log = logging.getLogger(__name__)
Run = Callable[[Job], Awaitable[JobResult | None]]


@dataclass(slots=True)
class WorkerCounts:
    """Jobs this gateway finished since it started, for metrics."""

    done: int = 0
    failed: int = 0
    deferred: int = 0


class BatchWorker:
    def __init__(
        self,
        queue: JobQueue,
        run: Run,
        config: BatchConfig,
        owner: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._queue = queue
        self._run = run
        self._config = config
        self._windows = config.parsed_windows()
        self._owner = owner
        self._clock = clock
        self._inflight: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        # Set when jobs are queued here (`notify`), a slot frees, or the closer sees jobs waiting.
        self._wake = asyncio.Event()
        # Set when jobs are queued or cancelled here, this worker claims some, or its last job ends: batches to close.
        self._closer_wake = asyncio.Event()
        self._stopping = False
        self._next_start = 0.0
        self.counts = WorkerCounts()
        self.status: QueueStatus | None = None  # the queue's depth as last read, for metrics

    def notify(self) -> None:
        """Jobs were queued, or a batch cancelled, on this gateway (BatchService): look now."""
        self._wake.set()
        self._closer_wake.set()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._drain(), name="costwarden-batch-worker"),
            asyncio.create_task(self._close(), name="costwarden-batch-closer"),
        ]

    async def stop(self) -> None:
        """Stop claiming, and let the jobs in flight finish (each is bounded by its upstream's
        timeouts). Never cancelled: a cancelled job would be recorded as a 499 under its request
        id, and its re-run's answer would then be the duplicate the ledger drops."""
        self._stopping = True  # a loop whose cancellation was lost still ends at its next turn
        await cancel_and_wait(*self._tasks)
        self._tasks = []
        if self._inflight:
            log.info("waiting for %d batch job(s) in flight to finish", len(self._inflight))
            await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _close(self) -> None:
        """Every `poll_seconds`, in or out of the windows: close finished, cancelled and expired
        batches, and read the queue's depth for the metrics. Off the claim loop, so its scans of
        the queue never hold up claims."""
        while not self._stopping:
            self._closer_wake.clear()  # before the read: a claim from now on ends an idle wait
            try:
                now = self._clock()
                await self._queue.finalize(now)
                self.status = await queue_status(self._queue, now)
                if self.status.depth:
                    self._wake.set()  # jobs wait (queued by another gateway, or deferred): claim them
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the batch worker failed to close batches")
                self.status = None
            if self._busy():
                await asyncio.sleep(self._config.poll_seconds)
            else:
                await wait_event(self._closer_wake, self._config.idle_poll_seconds)

    def _busy(self) -> bool:
        """Whether the queue holds unfinished jobs, as far as this worker knows (unknown: busy)."""
        status = self.status
        return bool(self._inflight) or status is None or bool(status.depth or status.running)

    async def _drain(self) -> None:
        while not self._stopping:
            # Cleared before the claim, never after: a job queued or a slot freed while the claim
            # runs must end the wait that follows (else it waits a whole poll for nothing).
            self._wake.clear()
            try:
                now = self._clock()
                closed_for = seconds_until_open(self._windows, now)
                if closed_for > 0:
                    await asyncio.sleep(min(closed_for, self._config.poll_seconds))
                    continue
                claimed = await self._claim(now)
            except asyncio.CancelledError:
                raise
            except Exception:  # the queue's database is away: try again at the next poll
                log.exception("the batch worker failed to reach its queue")
                claimed = 0
            if not claimed:
                delay = self._config.poll_seconds if self._busy() else self._config.idle_poll_seconds
                await wait_event(self._wake, delay)

    async def _claim(self, now: float) -> int:
        free = self._config.concurrency - len(self._inflight)
        if free <= 0:
            return 0
        jobs = await self._queue.claim(self._owner, free, now, self._config.lease_seconds)
        if jobs:
            self._closer_wake.set()
        for job in jobs:
            task = asyncio.create_task(self._execute(job, self._slot()), name=f"costwarden-batch-job-{job.id}")
            self._inflight.add(task)
            task.add_done_callback(self._done)
        return len(jobs)

    def _slot(self) -> float:
        """When the next job may start (monotonic seconds): at most `rate_per_second` starts a second."""
        start = max(self._next_start, time.monotonic())
        self._next_start = start + 1.0 / self._config.rate_per_second
        return start

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()  # a slot is free: claim again without waiting for the poll
        if not self._inflight:
            # Its batch may be complete: close it now. Else a job ending between the closer's
            # finalize and its status read left the batch open for a whole idle poll.
            self._closer_wake.set()

    async def _execute(self, job: Job, start: float) -> None:
        try:
            wait = start - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            result = await self._run(job)
            if result is None:
                self.counts.deferred += 1
                await self._queue.defer(job, next_request_id(), self._clock() + self._config.retry_seconds)
                return
            if await self._queue.finish(job, result, self._clock()):
                if result.ok:
                    self.counts.done += 1
                else:
                    self.counts.failed += 1
        except asyncio.CancelledError:
            raise
        except Exception:  # the lease expires and the job runs again, under the same request id
            log.exception("batch job %s failed to run", job.id)


def worker_owner() -> str:
    """This gateway's name on the leases it takes: host, process and a random part."""
    return f"{socket.gethostname()[:64]}-{os.getpid()}-{os.urandom(4).hex()}"
