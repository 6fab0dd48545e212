"""Samples the compute collectors take (a process's CPU and memory, a GPU's utilisation) and the busy
time they measure over a window. Gaps between samples longer than `max_gap` are not counted: a gap
is shown as a gap, never filled in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

PROMETHEUS_GPU = -1  # GpuSample.gpu of a Prometheus sample: a deployment's mean over its GPUs


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """One model-server process at `at` (Unix s): cumulative CPU seconds (user + system), RSS, threads,
    each summed over the process and its descendants, whose pids are in `children` (a GPU context held by
    one of them, e.g. an MLServer inference worker, is the deployment's too)."""

    at: float
    deployment: str
    pid: int
    cpu_seconds: float
    rss_bytes: int
    threads: int
    children: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """A process holding a GPU context: its memory, and its SM share when NVML had a sample (else None)."""

    pid: int
    memory_bytes: int
    sm_pct: float | None = None


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One GPU at `at`: utilisation over the last sample period (%), memory used, power, energy counter."""

    at: float
    gpu: int
    util_pct: float
    memory_used_bytes: int
    power_mw: int
    energy_mj: int | None
    processes: tuple[GpuProcess, ...] = ()
    deployment: str | None = None  # set when the source already knows it (Prometheus labels); else by pid


@dataclass(frozen=True, slots=True)
class Measured:
    """Busy seconds measured in a window, the seconds covered by samples, and the gaps left out."""

    busy_seconds: float
    covered_seconds: float
    gaps: int


def gpu_busy(samples: Iterable[GpuSample], start: float, end: float, max_gap: float) -> Measured:
    """Integral of utilisation over [start, end]: each sample's percentage covers the time since the
    previous sample (NVML reports utilisation over the last period). Time going back is a gap."""
    busy = covered = 0.0
    gaps = 0
    prev: float | None = None
    for sample in sorted(samples, key=lambda s: s.at):
        if prev is not None:
            lo, hi = max(prev, start), min(sample.at, end)
            if sample.at - prev > max_gap:
                gaps += 1
            elif hi > lo:
                busy += (hi - lo) * min(max(sample.util_pct, 0.0), 100.0) / 100.0
                covered += hi - lo
        prev = sample.at
    return Measured(busy, covered, gaps)


def cpu_busy(samples: Sequence[ProcessSample], start: float, end: float, max_gap: float) -> Measured:
    """CPU seconds used in [start, end] by each pid (a counter that goes down, or a gap, is skipped:
    a restarted process or a clock that jumped back), summed over pids; a sample pair straddling a
    window edge counts pro rata."""
    busy = covered = 0.0
    gaps = 0
    by_pid: dict[int, list[ProcessSample]] = {}
    for sample in samples:
        by_pid.setdefault(sample.pid, []).append(sample)
    for series in by_pid.values():
        series.sort(key=lambda s: s.at)
        for a, b in pairwise(series):
            span = b.at - a.at
            used = b.cpu_seconds - a.cpu_seconds
            if span <= 0 or span > max_gap or used < 0:
                gaps += 1
                continue
            lo, hi = max(a.at, start), min(b.at, end)
            if hi > lo:
                busy += used * (hi - lo) / span
                covered += hi - lo
    return Measured(busy, covered, gaps)


def gpu_busy_by_owner(
    samples: Iterable[GpuSample], owners: Mapping[int, str], start: float, end: float, max_gap: float
) -> dict[str, float]:
    """Each GPU's busy time split among the owners (deployments) of the processes on it: by their SM
    share where NVML sampled it, else by the GPU memory each holds. Busy time of a GPU with none of
    the owners' processes on it stays unassigned (it is not made up for anyone)."""
    busy: dict[str, float] = {}
    by_gpu: dict[int, list[GpuSample]] = {}
    for sample in samples:
        by_gpu.setdefault(sample.gpu, []).append(sample)
    for series in by_gpu.values():
        series.sort(key=lambda s: s.at)
        for a, b in pairwise(series):
            lo, hi = max(a.at, start), min(b.at, end)
            if b.at - a.at > max_gap or hi <= lo:
                continue
            seconds = (hi - lo) * min(max(b.util_pct, 0.0), 100.0) / 100.0
            mine = [p for p in b.processes if p.pid in owners]
            sm = {p.pid: p.sm_pct for p in mine if p.sm_pct}
            weights = sm if sm else {p.pid: float(p.memory_bytes) for p in mine}
            total = sum(weights.values())
            for pid, weight in weights.items():
                if total > 0:
                    busy[owners[pid]] = busy.get(owners[pid], 0.0) + seconds * weight / total
    return busy
