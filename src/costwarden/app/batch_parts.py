"""The batch queue's parts in one gateway, when `batch.enabled` (docs/batch.md): the queue, the Batch
API's service, the enqueue that queues realtime requests as jobs (202), the workers that drain the
queue through the chain, the sender of realtime jobs' callbacks (when `batch.callbacks.secret` is
set), and the queue's retention (when `batch.retention_days` is set: the leading gateway prunes).
The runtime opens, starts, stops and closes them at their places in its own order."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from costwarden.chain.defer import Enqueue
from costwarden.chain.order import Chain
from costwarden.config.batch import BatchConfig
from costwarden.observability.batch_queue import BatchQueueCollector, RealtimeJobsCollector
from costwarden.ports import BatchBackend
from costwarden.services.batch import BatchService
from costwarden.services.batch_run import JobRunner
from costwarden.services.batch_worker import BatchWorker, worker_owner
from costwarden.services.job_callbacks import CallbackCounts, CallbackSender
from costwarden.services.retention import RetentionLoop, prune_queue
from costwarden.storage.factory import open_queue

if TYPE_CHECKING:  # made on first use (app/runtime.py): a gateway that sends nothing through it never imports it
    import aiohttp

Lead = Callable[[float], Awaitable[bool]]  # whether this replica leads now (the governor's lease)


class BatchParts:
    def __init__(self, config: BatchConfig, ledger_url: str) -> None:
        self.config = config
        self.queue: BatchBackend = open_queue(config.queue or ledger_url)
        self.service = BatchService(self.queue, config, self._changed)
        self.enqueue = Enqueue(self.service.submit_one, config.callbacks.secret is not None)
        self.worker: BatchWorker | None = None
        self.callbacks: CallbackSender | None = None
        self.retention: RetentionLoop | None = None

    def _changed(self) -> None:
        """Jobs were queued or a batch cancelled here: wake this gateway's batch worker."""
        if self.worker is not None:
            self.worker.notify()

    def build(self, chain: Chain, session: aiohttp.ClientSession, registry: CollectorRegistry, lead: Lead) -> None:
        """The workers that run jobs through `chain` (the batch chain), the job callbacks, their metrics,
        and the retention that the replica `lead` says leads runs."""
        runner = JobRunner(chain, self.config.price_multiplier)
        self.worker = worker = BatchWorker(self.queue, runner.run, self.config, worker_owner())
        registry.register(BatchQueueCollector(lambda: (worker.status, worker.counts)))
        callbacks = self.config.callbacks
        if callbacks.secret is not None:
            self.callbacks = CallbackSender(self.queue, self.queue, session, callbacks, self.config.poll_seconds)
        registry.register(RealtimeJobsCollector(self._realtime_counts))
        days, every = self.config.retention_days, self.config.retention_every_seconds
        if days is not None and every > 0:
            queue, size = self.queue, self.config.retention_batch

            async def prune(before: float) -> int:
                return (await prune_queue(queue, before, size)).total

            what = "batch queue rows (finished batches, their jobs and files, old uploads)"
            self.retention = RetentionLoop(prune, lead, days, every, what)

    def _realtime_counts(self) -> tuple[dict[str, int], CallbackCounts | None]:
        return self.enqueue.queued, self.callbacks.counts if self.callbacks is not None else None

    def start(self) -> None:
        """Start the workers and the callbacks (after `build`)."""
        if self.worker is not None:
            self.worker.start()
        if self.callbacks is not None:
            self.callbacks.start()
        if self.retention is not None:
            self.retention.start()

    async def stop(self) -> None:
        """Stop the retention, the workers, then the callbacks; the queue stays open (`close`)."""
        if self.retention is not None:
            await self.retention.stop()
        if self.worker is not None:
            await self.worker.stop()
        if self.callbacks is not None:
            await self.callbacks.stop()
