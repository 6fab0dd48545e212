"""Prometheus view of the batch queue: depth and age (as last read by this gateway's worker) and
the jobs this gateway finished, by result. No per-batch labels: batch ids are unbounded."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from costwarden.domain.deferral import QueueReason
from costwarden.services.batch_queue import QueueStatus
from costwarden.services.batch_worker import WorkerCounts
from costwarden.services.job_callbacks import CallbackCounts


class BatchQueueCollector(Collector):
    def __init__(self, read: Callable[[], tuple[QueueStatus | None, WorkerCounts]]) -> None:
        self._read = read

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        status, counts = self._read()
        if status is not None:
            yield GaugeMetricFamily("costwarden_batch_queue_depth", "Batch jobs waiting to run.", status.depth)
            yield GaugeMetricFamily("costwarden_batch_queue_running", "Batch jobs leased to a worker.", status.running)
            yield GaugeMetricFamily(
                "costwarden_batch_queue_oldest_age_seconds",
                "Seconds since the oldest unfinished batch job was queued (0 when none).",
                status.oldest_age_s,
            )
            yield GaugeMetricFamily("costwarden_batch_queue_batches", "Unfinished batches.", len(status.batches))
        jobs = CounterMetricFamily(
            "costwarden_batch_jobs",
            "Batch jobs this gateway ran, by result: done (2xx), failed (any other answer), "
            "deferred (refused by admission for now: the job waits and runs later).",
            labels=["result"],
        )
        for result in ("done", "failed", "deferred"):
            jobs.add_metric([result], getattr(counts, result))
        yield jobs


class RealtimeJobsCollector(Collector):
    """Realtime requests queued as jobs (202), by why, and the attempts to deliver their callbacks."""

    def __init__(self, read: Callable[[], tuple[dict[str, int], CallbackCounts | None]]) -> None:
        self._read = read

    def collect(self) -> Iterable[CounterMetricFamily]:
        queued, callbacks = self._read()
        family = CounterMetricFamily(
            "costwarden_queued_requests",
            "Realtime requests answered 202 and queued as a job, by reason: budget (a `queue` budget "
            "would have refused it) or priority (X-Costwarden-Priority: batch).",
            labels=["reason"],
        )
        for reason in QueueReason:
            family.add_metric([reason.value], queued.get(reason.value, 0))
        yield family
        if callbacks is not None:
            attempts = CounterMetricFamily(
                "costwarden_job_callback_attempts",
                "Attempts to POST a finished job to its X-Costwarden-Callback URL, by result: delivered (2xx), "
                "retrying (failed; another attempt follows), gave_up (the last attempt failed).",
                labels=["result"],
            )
            for result in ("delivered", "retrying", "gave_up"):
                attempts.add_metric([result], getattr(callbacks, result))
            yield attempts
