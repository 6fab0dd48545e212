"""The compute sampler: runs each configured collector on its interval in a worker thread (never on
the request path), stores the samples and each collector's status, prunes old samples; and the
measured busy time of each deployment over a window, for the allocation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from costwarden.config.hardware import resolve_profile
from costwarden.config.models import Config
from costwarden.domain.collector_status import CollectorStatus
from costwarden.domain.compute_sample import (
    PROMETHEUS_GPU,
    GpuSample,
    ProcessSample,
    cpu_busy,
    gpu_busy,
    gpu_busy_by_owner,
)
from costwarden.ports import ComputeCollector, SampleStore

log = logging.getLogger("costwarden.compute")
PRUNE_EVERY = 3600.0


class ComputeSampler:
    def __init__(self, collectors: Sequence[tuple[ComputeCollector, float]], store: SampleStore, retention_s: float):
        self.collectors = list(collectors)
        self.store = store
        self.retention_s = retention_s
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def statuses(self) -> list[CollectorStatus]:
        return [c.status for c, _ in self.collectors]

    async def start(self) -> None:
        for collector, interval in self.collectors:
            started = await asyncio.to_thread(collector.start)
            if not started:
                log.warning("compute collector %s is off: %s", collector.status.name, collector.status.last_error)
                continue
            self._tasks.append(asyncio.create_task(self._loop(collector, interval)))
        await self._save_status()
        if self.collectors:
            self._tasks.append(asyncio.create_task(self._prune_loop()))

    async def _loop(self, collector: ComputeCollector, interval: float) -> None:
        while True:
            await self.tick(collector)
            await asyncio.sleep(interval)

    async def tick(self, collector: ComputeCollector) -> int:
        """One sample of one collector, stored; an error is kept in its status, never raised."""
        now = time.time()
        try:
            samples = await asyncio.to_thread(collector.sample, now)
            if samples:
                await self.store.write_samples(samples)
                collector.status.samples += len(samples)
                collector.status.last_sample_at = now
        except Exception as exc:  # a collector or the database failing must not stop the gateway
            collector.status.last_error = f"{type(exc).__name__}: {exc}"
            samples = []
        await self._save_status()
        return len(samples)

    async def _save_status(self) -> None:
        try:
            await self.store.save_status(self.statuses, time.time())
        except Exception as exc:
            log.warning("cannot save compute collector status: %s", exc)

    async def _prune_loop(self) -> None:
        while True:
            try:
                await self.store.prune_samples(time.time() - self.retention_s)
            except Exception as exc:
                log.warning("cannot prune compute samples: %s", exc)
            await asyncio.sleep(PRUNE_EVERY)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for collector, _ in self.collectors:
            await asyncio.to_thread(collector.stop)
        await self._save_status()
        await self.store.close()


def measured_busy(
    config: Config, samples: Sequence[ProcessSample | GpuSample], start: float, end: float
) -> dict[str, tuple[float, str]]:
    """Busy replica-seconds per deployment from samples: CPU seconds over the profile's vCPUs (process,
    or Prometheus's cAdvisor series), or, for a GPU profile, GPU activity over its accelerators: nvml's
    whole device when one deployment has a GPU profile, else split by the pids the process collectors
    found (SM share, else GPU memory); Prometheus's mean DCGM activity times the replicas. Gaps longer
    than 3 intervals are not counted."""
    out: dict[str, tuple[float, str]] = {}
    collectors = config.compute.collectors
    intervals = {c.deployment: c.interval_seconds for c in collectors if c.type == "process"}
    prom = next((c.interval_seconds for c in collectors if c.type == "prometheus"), None)
    local = [s for s in samples if not (isinstance(s, GpuSample) and s.deployment) and not _from_prometheus(s)]
    gpu_deployments = []
    for dep in config.deployments:
        profile = resolve_profile(dep.compute.profile, config.hardware) if dep.compute else None
        if profile is None or dep.compute is None:
            continue
        if profile.accelerator_count:
            gpu_deployments.append((dep.name, profile.accelerator_count))
        if dep.name in intervals:
            mine = [s for s in local if isinstance(s, ProcessSample) and s.deployment == dep.name]
            cpu = cpu_busy(mine, start, end, 3 * intervals[dep.name])
            if cpu.covered_seconds > 0:
                out[dep.name] = (cpu.busy_seconds / profile.vcpus, "process collector")
        if prom is not None and dep.name not in out:
            remote = [s for s in samples if _from_prometheus(s) and s.deployment == dep.name]
            cpu = cpu_busy([s for s in remote if isinstance(s, ProcessSample)], start, end, 3 * prom)
            gpu = gpu_busy([s for s in remote if isinstance(s, GpuSample)], start, end, 3 * prom)
            replicas = dep.compute.replicas if isinstance(dep.compute.replicas, int) else 1
            if profile.accelerator_count and gpu.covered_seconds > 0:
                out[dep.name] = (gpu.busy_seconds * replicas, "prometheus (DCGM)")
            elif cpu.covered_seconds > 0:
                out[dep.name] = (cpu.busy_seconds / profile.vcpus, "prometheus (cAdvisor)")
    out.update(_nvml_busy(config, local, gpu_deployments, start, end))
    return out


def _from_prometheus(sample: ProcessSample | GpuSample) -> bool:
    return (isinstance(sample, ProcessSample) and sample.pid == 0) or (
        isinstance(sample, GpuSample) and sample.gpu == PROMETHEUS_GPU
    )


def _nvml_busy(
    config: Config, local: Sequence[ProcessSample | GpuSample], gpu_deployments: list[tuple[str, int]], start: float,
    end: float,
) -> dict[str, tuple[float, str]]:  # fmt: skip
    gpu_interval = next((c.interval_seconds for c in config.compute.collectors if c.type == "nvml"), None)
    gpus = [s for s in local if isinstance(s, GpuSample)]
    if gpu_interval is None or not gpus:
        return {}
    if len(gpu_deployments) == 1:  # one GPU deployment on this host: the whole device is its
        name, count = gpu_deployments[0]
        each = [gpu_busy([s for s in gpus if s.gpu == i], start, end, 3 * gpu_interval) for i in {s.gpu for s in gpus}]
        if any(m.covered_seconds > 0 for m in each):
            return {name: (sum(m.busy_seconds for m in each) / count, "nvml collector")}
        return {}
    owners = {s.pid: s.deployment for s in local if isinstance(s, ProcessSample)}  # by the process collectors
    counts = dict(gpu_deployments)
    split = gpu_busy_by_owner(gpus, owners, start, end, 3 * gpu_interval)
    basis = "nvml collector, by pid"
    return {name: (seconds / counts[name], basis) for name, seconds in split.items() if name in counts}
