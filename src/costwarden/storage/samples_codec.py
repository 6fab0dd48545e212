"""Compute samples and collector status as database rows (the same columns for SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from costwarden.domain.collector_status import CollectorStatus
from costwarden.domain.compute_rollup import MinuteTotal, SeriesTotal
from costwarden.domain.compute_sample import GpuProcess, GpuSample, ProcessSample

SAMPLE_COLUMNS = (
    "at, source, deployment, pid, gpu, cpu_seconds, rss_bytes, threads, util_pct, memory_bytes, power_mw, "
    "energy_mj, processes"
)
MINUTE_COLUMNS = (
    "minute, source, deployment, unit, samples, busy_seconds, covered_seconds, peak_bytes, sum_bytes, energy_mj"
)
MINUTE_UPDATE = ", ".join(f"{c} = excluded.{c}" for c in MINUTE_COLUMNS.split(", ")[4:])
STATUS_COLUMNS = "name, running, last_sample_at, samples, last_error"
# A collector's status, inserted or replaced; {} takes the six placeholders of the dialect.
STATUS_UPSERT = (
    f"INSERT INTO compute_collectors ({STATUS_COLUMNS}, updated_at) VALUES ({{}}) "
    "ON CONFLICT (name) DO UPDATE SET running = excluded.running, last_sample_at = excluded.last_sample_at, "
    "samples = excluded.samples, last_error = excluded.last_error, updated_at = excluded.updated_at"
)
Row = tuple[Any, ...]


def sample_row(sample: ProcessSample | GpuSample) -> Row:
    if isinstance(sample, ProcessSample):
        s = sample
        children = orjson.dumps(list(s.children)).decode() if s.children else None  # `processes` holds them
        return (s.at, "process", s.deployment, s.pid, None, s.cpu_seconds, s.rss_bytes, s.threads, None, None, None,
                None, children)  # fmt: skip
    g = sample
    procs = orjson.dumps([[p.pid, p.memory_bytes, p.sm_pct] for p in g.processes]).decode()
    return (g.at, "gpu", g.deployment, None, g.gpu, None, None, None, g.util_pct, g.memory_used_bytes, g.power_mw,
            g.energy_mj, procs)  # fmt: skip


def sample_from_row(row: Sequence[Any]) -> ProcessSample | GpuSample:
    at, source, deployment, pid, gpu, cpu, rss, threads, util, memory, power, energy, procs = row
    if source == "process":
        children = tuple(int(p) for p in orjson.loads(procs)) if procs else ()
        return ProcessSample(float(at), str(deployment), int(pid), float(cpu), int(rss), int(threads), children)
    processes = tuple(GpuProcess(int(p), int(m), None if s is None else float(s)) for p, m, s in orjson.loads(procs))
    return GpuSample(float(at), int(gpu), float(util), int(memory), int(power), None if energy is None else int(energy),
                     processes, None if deployment is None else str(deployment))  # fmt: skip


def status_row(status: CollectorStatus, at: float) -> Row:
    return (status.name, status.running, status.last_sample_at, status.samples, status.last_error, at)


def statuses_from_rows(rows: Iterable[Sequence[Any]]) -> list[CollectorStatus]:
    return [CollectorStatus(str(n), bool(r), None if t is None else float(t), int(c), e) for n, r, t, c, e in rows]


def minute_row(row: MinuteTotal) -> Row:
    t = row.total
    return (row.minute, t.source, t.deployment, t.unit, t.samples, t.busy_seconds, t.covered_seconds, t.peak_bytes,
            t.sum_bytes, t.energy_mj)  # fmt: skip


def minute_from_row(row: Sequence[Any]) -> MinuteTotal:
    minute, source, deployment, unit, samples, busy, covered, peak, total, energy = row
    return MinuteTotal(int(minute), SeriesTotal(str(source), str(deployment), int(unit), int(samples), float(busy),
                                                float(covered), int(peak), float(total), int(energy)))  # fmt: skip
