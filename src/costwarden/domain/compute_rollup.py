"""Compute samples summed per series over a span: the per-minute rollup kept in the ledger database,
and the same totals taken from raw samples over any window. Allocation reads only these totals, so a
window read from minute rows and the same window read from raw samples give the same busy time.

A series is one source's view of one thing: `process` (a local process: CPU seconds used),
`prom-cpu` (a deployment's cAdvisor CPU seconds), `prom-gpu` (a deployment's mean DCGM activity),
`gpu` (one nvml device: utilisation-seconds) and `gpu-owner` (one nvml device's busy seconds that
fall to one deployment, split by the pids the process collectors found). A sample pair that
straddles a span's edge counts pro rata on each side, so spans add up; a pair further apart than
the series' gap limit is a gap in every span it touches.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from costwarden.domain.compute_sample import (
    PROMETHEUS_GPU,
    GpuSample,
    ProcessSample,
    cpu_busy,
    gpu_busy,
    gpu_busy_by_owner,
)

MINUTE = 60
Sample = ProcessSample | GpuSample


@dataclass(frozen=True, slots=True)
class SeriesTotal:
    """One series over a span: samples taken in it, busy seconds (CPU seconds for the CPU sources,
    utilisation-seconds for the GPU ones), seconds covered by samples, peak and summed memory of
    its samples (RSS or GPU memory; mean = sum / samples) and energy used (mJ, nvml)."""

    source: str
    deployment: str  # "" for an nvml device
    unit: int  # the pid (process) or the device index (gpu, gpu-owner); else 0
    samples: int = 0
    busy_seconds: float = 0.0
    covered_seconds: float = 0.0
    peak_bytes: int = 0
    sum_bytes: float = 0.0
    energy_mj: int = 0

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.source, self.deployment, self.unit)

    def scaled(self, fraction: float) -> SeriesTotal:
        """The part of a minute row inside a window that cuts it (time-proportional)."""
        return SeriesTotal(self.source, self.deployment, self.unit, self.samples, self.busy_seconds * fraction,
                           self.covered_seconds * fraction, self.peak_bytes, self.sum_bytes,
                           int(self.energy_mj * fraction))  # fmt: skip


@dataclass(frozen=True, slots=True)
class MinuteTotal:
    """A series' total over the minute starting at `minute` (Unix s, a multiple of 60)."""

    minute: int
    total: SeriesTotal


@dataclass(frozen=True, slots=True)
class Gaps:
    """The longest pair of samples each source still counts (three sampling intervals by default)."""

    process: Mapping[str, float] = field(default_factory=dict)  # deployment -> its process collector's
    prometheus: float | None = None
    nvml: float | None = None

    @property
    def widest(self) -> float:
        return max([*self.process.values(), self.prometheus or 0.0, self.nvml or 0.0])


def window_totals(samples: Sequence[Sample], start: float, end: float, gaps: Gaps) -> list[SeriesTotal]:
    """Every series' total over [start, end) from raw samples (those up to `gaps.widest` before the
    window are read for the pair that straddles its start)."""
    out: list[SeriesTotal] = []
    local_cpu: dict[str, list[ProcessSample]] = {}
    prom_cpu: dict[str, list[ProcessSample]] = {}
    prom_gpu: dict[str, list[GpuSample]] = {}
    nvml: dict[int, list[GpuSample]] = {}
    for s in samples:
        if isinstance(s, ProcessSample):
            (prom_cpu if s.pid == 0 else local_cpu).setdefault(s.deployment, []).append(s)
        elif s.gpu == PROMETHEUS_GPU and s.deployment:
            prom_gpu.setdefault(s.deployment, []).append(s)
        elif not s.deployment and s.gpu != PROMETHEUS_GPU:
            nvml.setdefault(s.gpu, []).append(s)
    for deployment, series in sorted(local_cpu.items()):
        if deployment in gaps.process:
            for pid in sorted({s.pid for s in series}):
                out.append(_cpu("process", deployment, pid, [s for s in series if s.pid == pid], start, end,
                                gaps.process[deployment]))  # fmt: skip
    if gaps.prometheus is not None:
        for deployment, series in sorted(prom_cpu.items()):
            out.append(_cpu("prom-cpu", deployment, 0, series, start, end, gaps.prometheus))
        for deployment, gpus in sorted(prom_gpu.items()):
            out.append(_gpu("prom-gpu", deployment, 0, gpus, start, end, gaps.prometheus))
    if gaps.nvml is not None:
        owners = {pid: dep for dep, series in local_cpu.items() for s in series for pid in (s.pid, *s.children)}
        for index, gpus in sorted(nvml.items()):
            out.append(_gpu("gpu", "", index, gpus, start, end, gaps.nvml))
            for deployment, seconds in sorted(gpu_busy_by_owner(gpus, owners, start, end, gaps.nvml).items()):
                out.append(SeriesTotal("gpu-owner", deployment, index, busy_seconds=seconds))
    return [t for t in out if t.samples or t.covered_seconds > 0 or t.source == "gpu-owner"]


def minute_totals(samples: Sequence[Sample], first: int, last: int, gaps: Gaps) -> list[MinuteTotal]:
    """Each minute in [first, last) folded from raw samples (`samples` reach `gaps.widest` beyond
    both ends); minutes without samples make no rows."""
    ordered = sorted(samples, key=lambda s: s.at)
    times = [s.at for s in ordered]
    out: list[MinuteTotal] = []
    for minute in range(first, last, MINUTE):
        lo = bisect_left(times, minute - gaps.widest)
        hi = bisect_right(times, minute + MINUTE + gaps.widest)
        out += [MinuteTotal(minute, t) for t in window_totals(ordered[lo:hi], minute, minute + MINUTE, gaps)]
    return out


def from_minutes(rows: Iterable[MinuteTotal], start: float, end: float) -> list[SeriesTotal]:
    """Minute rows over [start, end): whole minutes as they are, a cut minute time-proportionally."""
    out = []
    for row in rows:
        inside = min(row.minute + MINUTE, end) - max(float(row.minute), start)
        if inside >= MINUTE:
            out.append(row.total)
        elif inside > 0:
            out.append(row.total.scaled(inside / MINUTE))
    return out


def merge(totals: Iterable[SeriesTotal]) -> list[SeriesTotal]:
    """Totals of the same series added up (samples, seconds, energy summed; the peak kept)."""
    merged: dict[tuple[str, str, int], SeriesTotal] = {}
    for t in totals:
        m = merged.get(t.key)
        merged[t.key] = t if m is None else SeriesTotal(
            t.source, t.deployment, t.unit, m.samples + t.samples, m.busy_seconds + t.busy_seconds,
            m.covered_seconds + t.covered_seconds, max(m.peak_bytes, t.peak_bytes), m.sum_bytes + t.sum_bytes,
            m.energy_mj + t.energy_mj)  # fmt: skip
    return [merged[k] for k in sorted(merged)]


def floor_minute(at: float) -> int:
    return math.floor(at / MINUTE) * MINUTE


def ceil_minute(at: float) -> int:
    return math.ceil(at / MINUTE) * MINUTE


def _inside(samples: Sequence[Sample], start: float, end: float) -> list[Sample]:
    return [s for s in samples if start <= s.at < end]


def _cpu(source: str, deployment: str, unit: int, series: list[ProcessSample], start: float, end: float,
         gap: float) -> SeriesTotal:  # fmt: skip
    used = cpu_busy(series, start, end, gap)
    mine = _inside(series, start, end)
    rss = [s.rss_bytes for s in mine if isinstance(s, ProcessSample)]
    return SeriesTotal(source, deployment, unit, len(mine), used.busy_seconds, used.covered_seconds,
                       max(rss, default=0), float(sum(rss)))  # fmt: skip


def _gpu(source: str, deployment: str, unit: int, series: list[GpuSample], start: float, end: float,
         gap: float) -> SeriesTotal:  # fmt: skip
    busy = gpu_busy(series, start, end, gap)
    mine = [s for s in _inside(series, start, end) if isinstance(s, GpuSample)]
    memory = [s.memory_used_bytes for s in mine]
    counters = [s.energy_mj for s in sorted(mine, key=lambda s: s.at) if s.energy_mj is not None]
    energy = sum(max(b - a, 0) for a, b in pairwise(counters))
    return SeriesTotal(source, deployment, unit, len(mine), busy.busy_seconds, busy.covered_seconds,
                       max(memory, default=0), float(sum(memory)), energy)  # fmt: skip
