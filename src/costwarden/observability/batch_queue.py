"""Prometheus view of the batch queue: depth and age (as last read by this gateway's worker) and
the jobs this gateway finished, by result. No per-batch labels: batch ids are unbounded."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from costwarden.services.batch_queue import QueueStatus
from costwarden.services.batch_worker import WorkerCounts


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
