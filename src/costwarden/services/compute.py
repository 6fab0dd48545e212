"""The compute sampler: runs each configured collector on its interval in a worker thread (never on
the request path), stores the samples and each collector's status, prunes old samples; and the
measured busy time of each deployment over a window, for the allocation."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Callable, Sequence

from costwarden.aio import PeriodicTask
from costwarden.config.hardware import resolve_profile
from costwarden.config.models import Config
from costwarden.domain.collector_status import CollectorStatus
from costwarden.domain.compute_rollup import (
    MINUTE,
    Gaps,
    SeriesTotal,
    ceil_minute,
    floor_minute,
    from_minutes,
    merge,
    minute_totals,
    window_totals,
)
from costwarden.domain.compute_sample import GpuSample, ProcessSample
from costwarden.domain.sample_clock import ClockGuard, Reading, read_clock
from costwarden.ports import ComputeCollector, SampleStore

log = logging.getLogger("costwarden.compute")
PRUNE_EVERY = 3600.0
FOLD_EVERY = 60.0
FOLD_LAG = 60.0  # a sample is stored a little after it was taken (and Prometheus's lag behind now)
FOLD_CHUNK = 60 * MINUTE
GAP_INTERVALS = 3  # a pair of samples further apart than this many sampling intervals is a gap


class ComputeSampler:
    """Samples each collector, folds the samples into minute rows as minutes close, and prunes raw
    samples after `raw_retention_s` (never before they are folded) and minute rows after `retention_s`."""

    def __init__(
        self, collectors: Sequence[tuple[ComputeCollector, float]], store: SampleStore, retention_s: float,
        gaps: Gaps | None = None, raw_retention_s: float | None = None, clock: Callable[[], Reading] = read_clock,
    ) -> None:  # fmt: skip
        self.collectors = list(collectors)
        self.store = store
        self.retention_s = retention_s
        self.raw_retention_s = retention_s if raw_retention_s is None else min(raw_retention_s, retention_s)
        self.gaps = gaps or Gaps()
        self._folded: int | None = None  # minutes before this one are folded
        self._pruned = 0.0  # when prune last ran
        self._tasks: list[PeriodicTask] = []
        self._clock = clock
        self._guard = ClockGuard()
        self._intervals: dict[ComputeCollector, float] = {c: interval for c, interval in self.collectors}

    @property
    def statuses(self) -> list[CollectorStatus]:
        return [c.status for c, _ in self.collectors]

    async def start(self) -> None:
        for collector, interval in self.collectors:
            started = await asyncio.to_thread(collector.start)
            if not started:
                log.warning("compute collector %s is off: %s", collector.status.name, collector.status.last_error)
                continue
            # tick keeps a failure in the collector's status: it never raises.
            sample = functools.partial(self.tick, collector)
            name = f"costwarden-compute-{collector.status.name}"
            self._tasks.append(PeriodicTask(name, sample, interval, log=log, failure="cannot sample compute"))
        await self._save_status()
        if self.collectors:
            failure = "cannot fold or prune compute samples"  # the database failing must not stop the gateway
            fold = PeriodicTask("costwarden-compute-fold", self._fold_round, FOLD_EVERY, log=log, failure=failure)
            self._tasks.append(fold)
        for task in self._tasks:
            task.start()

    async def tick(self, collector: ComputeCollector) -> int:
        """One sample of one collector, stored; an error is kept in its status, never raised. While
        the wall clock is behind where it stood (it stepped back), nothing is sampled (ClockGuard)."""
        reading = self._clock()
        now = reading[0]
        held = self._guard.hold(collector, reading, GAP_INTERVALS * self._intervals.get(collector, 0.0))
        if held is not None:
            collector.status.last_error = held
            await self._save_status()
            return 0
        if self._guard.released(collector, collector.status.last_error):
            collector.status.last_error = None
        try:
            samples = await asyncio.to_thread(collector.sample, now)
            if samples:
                await self.store.write_samples(samples)
                self._guard.stored(collector, reading)
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

    async def fold(self, now: float) -> int:
        """Fold each closed minute into minute rows: a minute is closed once the longest pair that
        can straddle its end (the widest gap) and the storing lag have passed. Rows are upserted, so
        folding a minute again (another replica, a restart) changes nothing."""
        upto = floor_minute(now - self.gaps.widest - FOLD_LAG)
        widest = self.gaps.widest
        if self._folded is None:
            last, oldest = await self.store.last_minute(), await self.store.oldest_sample()
            if oldest is None:
                self._folded = upto if last is None else last + MINUTE
                return 0
            start = floor_minute(oldest)
            self._folded = start if last is None else max(last + MINUTE, start)
        written = 0
        while self._folded < upto:
            following = await self.store.oldest_sample(self._folded - widest)  # skip a stretch without samples
            first = upto if following is None else max(self._folded, floor_minute(following))
            if first >= upto:
                self._folded = upto
                break
            stop = min(first + FOLD_CHUNK, upto)
            samples = await self.store.samples(first - widest, stop + widest)
            written += await self.store.write_minutes(minute_totals(samples, first, stop, self.gaps))
            self._folded = stop
        return written

    async def prune(self, now: float) -> None:
        """Raw samples past their retention (only those already folded) and minute rows past theirs."""
        if self._folded is not None:
            await self.store.prune_samples(min(now - self.raw_retention_s, self._folded - self.gaps.widest))
        await self.store.prune_minutes(now - self.retention_s)

    async def _fold_round(self) -> None:
        now = time.time()
        await self.fold(now)
        if now - self._pruned >= PRUNE_EVERY:
            await self.prune(now)
            self._pruned = now

    async def stop(self) -> None:
        await asyncio.gather(*(task.stop() for task in self._tasks))
        self._tasks.clear()
        for collector, _ in self.collectors:
            await asyncio.to_thread(collector.stop)
        await self._save_status()
        await self.store.close()


def gaps_of(config: Config) -> Gaps:
    """Each source's gap limit: three of its collector's sampling intervals."""
    collectors, n = config.compute.collectors, GAP_INTERVALS
    return Gaps(
        process={c.deployment: n * c.interval_seconds for c in collectors if c.type == "process"},
        prometheus=next((n * c.interval_seconds for c in collectors if c.type == "prometheus"), None),
        nvml=next((n * c.interval_seconds for c in collectors if c.type == "nvml"), None),
    )


def measured_busy(
    config: Config, samples: Sequence[ProcessSample | GpuSample], start: float, end: float
) -> dict[str, tuple[float, str]]:
    """Busy replica-seconds per deployment from raw samples over [start, end] (see `measured_from`)."""
    return measured_from(config, window_totals(samples, start, end, gaps_of(config)))


async def measured_window(config: Config, store: SampleStore, start: float, end: float) -> dict[str, tuple[float, str]]:
    """Busy replica-seconds per deployment over a window: raw samples where they are kept (from the
    first whole minute after the oldest one), the per-minute rollup before that; minutes not folded
    yet are read raw (raw samples are never pruned before they are folded)."""
    gaps = gaps_of(config)
    oldest, last = await store.oldest_sample(), await store.last_minute()
    complete = end if oldest is None else float(ceil_minute(oldest + gaps.widest))
    split = min(max(min(complete, -math.inf if last is None else last + MINUTE), start), end)
    totals: list[SeriesTotal] = []
    if split > start:
        totals += from_minutes(await store.minutes(floor_minute(start), split), start, split)
    if split < end:
        totals += window_totals(await store.samples(split - gaps.widest, end + gaps.widest), split, end, gaps)
    return measured_from(config, merge(totals))


def measured_from(config: Config, totals: Sequence[SeriesTotal]) -> dict[str, tuple[float, str]]:
    """Busy replica-seconds per deployment: CPU seconds over the profile's vCPUs (process, or
    Prometheus's cAdvisor series), or, for a GPU profile, GPU activity over its accelerators: nvml's
    whole device when one deployment has a GPU profile, else split by the pids the process collectors
    found (SM share, else GPU memory); Prometheus's mean DCGM activity times the replicas. Gaps longer
    than 3 intervals are not counted."""
    out: dict[str, tuple[float, str]] = {}
    collectors = config.compute.collectors
    local = {c.deployment for c in collectors if c.type == "process"}
    prom = any(c.type == "prometheus" for c in collectors)
    gpu_deployments = []
    for dep in config.deployments:
        profile = resolve_profile(dep.compute.profile, config.hardware) if dep.compute else None
        if profile is None or dep.compute is None:
            continue
        if profile.accelerator_count:
            gpu_deployments.append((dep.name, profile.accelerator_count))
        if dep.name in local:
            cpu = _sum(totals, "process", dep.name)
            if cpu.covered_seconds > 0:
                out[dep.name] = (cpu.busy_seconds / profile.vcpus, "process collector")
        if prom and dep.name not in out:
            cpu, gpu = _sum(totals, "prom-cpu", dep.name), _sum(totals, "prom-gpu", dep.name)
            replicas = dep.compute.replicas if isinstance(dep.compute.replicas, int) else 1
            if profile.accelerator_count and gpu.covered_seconds > 0:
                out[dep.name] = (gpu.busy_seconds * replicas, "prometheus (DCGM)")
            elif cpu.covered_seconds > 0:
                out[dep.name] = (cpu.busy_seconds / profile.vcpus, "prometheus (cAdvisor)")
    out.update(_nvml_busy(config, totals, gpu_deployments))
    return out


def _sum(totals: Sequence[SeriesTotal], source: str, deployment: str | None = None) -> SeriesTotal:
    mine = [t for t in totals if t.source == source and (deployment is None or t.deployment == deployment)]
    return SeriesTotal(source, deployment or "", 0, busy_seconds=sum(t.busy_seconds for t in mine),
                       covered_seconds=sum(t.covered_seconds for t in mine))  # fmt: skip


def _nvml_busy(
    config: Config, totals: Sequence[SeriesTotal], gpu_deployments: list[tuple[str, int]]
) -> dict[str, tuple[float, str]]:
    if not any(c.type == "nvml" for c in config.compute.collectors):
        return {}
    if len(gpu_deployments) == 1:  # one GPU deployment on this host: the whole device is its
        name, count = gpu_deployments[0]
        whole = _sum(totals, "gpu")
        return {name: (whole.busy_seconds / count, "nvml collector")} if whole.covered_seconds > 0 else {}
    counts = dict(gpu_deployments)
    owners = {t.deployment for t in totals if t.source == "gpu-owner"} & set(counts)
    basis = "nvml collector, by pid"
    return {name: (_sum(totals, "gpu-owner", name).busy_seconds / counts[name], basis) for name in owners}
