"""The allocation use case: stream the ledger's request intervals over a window, page by page, into
the pure allocation engine; shared by `costwarden allocation` and `GET /admin/v1/allocation`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from costwarden.config.compute import PrometheusReplicas
from costwarden.config.hardware import resolve_profile
from costwarden.config.models import Config
from costwarden.domain.allocation import (
    IDLE_MODES,
    Allocation,
    DeploymentTotals,
    DeploymentUsage,
    IdleMode,
    Row,
    allocate,
)
from costwarden.domain.allocation_input import DIMENSIONS, IntervalGatherer, Provision
from costwarden.domain.money import usd_text
from costwarden.domain.report import QueryError
from costwarden.ports import SampleStore
from costwarden.services.busy_folds import FOLDABLE, folded_stretch, folds_of, horizon
from costwarden.services.compute import measured_window
from costwarden.services.replicas import prometheus_provisions
from costwarden.services.reports import iso_time, parse_duration, parse_list, parse_time
from costwarden.storage.busy_sql import BusyFolds
from costwarden.storage.intervals_sql import ledger_interval_count, ledger_intervals

_HOURS = Decimal("0.000001")


@dataclass(frozen=True, slots=True)
class AllocationQuery:
    start: float
    end: float
    by: tuple[str, ...]
    idle: IdleMode = "separate"


@dataclass(slots=True)
class AllocationReport:
    query: AllocationQuery
    allocation: Allocation
    scanned: int = 0
    skipped: int = 0
    dropped: int = 0
    notes: list[str] = field(default_factory=list)  # deployments left out, and why


def build_allocation_query(
    by: str | None, since: str | None, start: str | None, end: str | None, idle: str, now: float
) -> AllocationQuery:
    groups = tuple({"env": "environment", "key": "key_id"}.get(g, g) for g in parse_list(by or "team"))
    bad = [g for g in groups if g not in DIMENSIONS]
    if bad or not groups:
        raise QueryError(f"cannot group by {bad or by!r}: use one or more of {', '.join(DIMENSIONS)}")
    if idle not in IDLE_MODES:
        raise QueryError(f"idle {idle!r}: use one of {', '.join(IDLE_MODES)}")
    if since and (start or end):
        raise QueryError("use either since or from/to, not both")
    upper = parse_time(end) if end else now
    lower = max(0.0, upper - parse_duration(since or "24h")) if not start else parse_time(start)
    if not lower < upper:
        raise QueryError("the window is empty: its start is not before its end")
    mode: IdleMode = next(m for m in IDLE_MODES if m == idle)
    return AllocationQuery(lower, upper, groups, mode)


def provisions(config: Config, prometheus_note: bool = True) -> tuple[dict[str, Provision], list[str]]:
    """Each deployment with `compute:` and a fixed replica count; notes for those left out."""
    found: dict[str, Provision] = {}
    notes: list[str] = []
    for dep in config.deployments:
        if dep.compute is None:
            continue
        profile = resolve_profile(dep.compute.profile, config.hardware)
        if profile is None:  # the config check refuses this; kept for a config built in code
            notes.append(f"{dep.name}: unknown hardware profile {dep.compute.profile!r}; not allocated")
            continue
        if isinstance(dep.compute.replicas, PrometheusReplicas):
            if prometheus_note:
                notes.append(f"{dep.name}: replicas come from Prometheus, which no collector reads here; not allocated")
            continue
        if dep.compute.spot and profile.spot_hourly_usd is not None:
            profile = replace(profile, hourly_usd=profile.spot_hourly_usd, price_source=f"{profile.price_source}, spot")
        found[dep.name] = Provision(profile, dep.compute.replicas)
    return found, notes


async def gather(
    config: Config,
    query: AllocationQuery,
    found: Mapping[str, Provision],
    samples: SampleStore | None = None,
    on_page: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> tuple[IntervalGatherer, list[DeploymentUsage]]:
    """Each provisioned deployment's usage over the query's window: the ledger's upstream intervals,
    a page at a time, and the collectors' measured busy time where they ran. `on_total`, when given,
    is told how many rows the pages will hold before the first (a count query: only for a display)."""
    measured: Mapping[str, tuple[float, str]] = {}
    if samples is not None and config.compute.collectors:
        measured = await measured_window(config, samples, query.start, query.end)
    reach = horizon(config)
    folds = folds_of(config)
    stretch = None
    if folds is not None and found and set(query.by) <= FOLDABLE:
        stretch = await folded_stretch(folds, query.start, query.end, sorted(found), reach)
    gatherer = IntervalGatherer(query.start, query.end, query.by, found, stretch)
    spans = [(query.start - reach, query.end)]
    if folds is not None and stretch is not None:
        a, b = stretch
        await _add_folded(gatherer, folds, stretch, sorted(found), query.by)
        spans = [(query.start - reach, a), (max(a, b - reach), query.end)]
    if on_total is not None:
        counts = [await ledger_interval_count(config.storage.ledger, lo, hi, sorted(found)) for lo, hi in spans]
        on_total(sum(counts))
    for lo, hi in spans:  # rows started from the horizon before each raw stretch can count in it
        async for page in ledger_intervals(config.storage.ledger, lo, hi, sorted(found), query.by):
            gatherer.add_rows(page, reach)
            if on_page is not None:
                on_page(len(page))
    return gatherer, gatherer.usages(measured)


async def _add_folded(
    gatherer: IntervalGatherer, folds: BusyFolds, stretch: tuple[int, int], deployments: list[str], by: tuple[str, ...]
) -> None:
    """The folded hours' sums into the gatherer, per deployment and (when grouping by it) team."""
    sums: dict[tuple[str, str], tuple[dict[int, int], list[int]]] = {}
    for deployment, team, k, ns, requests, tokens in await folds.read(*stretch, deployments, "team" not in by):
        busy, counts = sums.setdefault((deployment, team), ({}, [0, 0]))
        if k:
            busy[k] = busy.get(k, 0) + ns
        counts[0] += requests
        counts[1] += tokens
    for (deployment, team), (busy, (requests, tokens)) in sums.items():
        labels = tuple(team if d == "team" else deployment for d in by)
        gatherer.add_folded(deployment, labels, busy, requests, tokens)


async def allocation(
    config: Config,
    query: AllocationQuery,
    samples: SampleStore | None = None,
    on_page: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> AllocationReport:
    """Read the window's upstream intervals a page at a time (memory: compact interval arrays) and
    allocate; busy time is measured from the collectors' samples where they ran. Records that started
    up to the horizon (services/busy_folds.horizon) before the window may still count in it. Grouped by
    team and/or deployment, the whole hours folded for every deployment are read from the folds."""
    found, notes = provisions(config, prometheus_note=False)
    counted, counted_notes = await prometheus_provisions(config, query.start, query.end)
    found.update(counted)
    notes += counted_notes
    gatherer, usages = await gather(config, query, found, samples, on_page, on_total)
    result = allocate(usages, len(query.by), query.idle)
    if not found:
        notes.append("no deployment has `compute:` with a replica count: nothing to allocate")
    return AllocationReport(query, result, gatherer.seen, gatherer.skipped, gatherer.dropped, notes)


def row_json(row: Row, by: tuple[str, ...]) -> dict[str, Any]:
    per_1k, per_1m = row.per_1k_requests(), row.per_1m_tokens()
    return {
        "name": "/".join(row.group),
        "properties": dict(zip(by, row.group, strict=False)),
        "requests": row.requests,
        "tokens": row.tokens,
        "busySeconds": round(row.busy_seconds, 6),
        "gpuHours": str(row.gpu_hours.quantize(_HOURS)),
        "cpuCoreHours": str(row.cpu_core_hours.quantize(_HOURS)),
        "ramGiBHours": str(row.gib_hours.quantize(_HOURS)),
        "usedCost": usd_text(row.used_usd),
        "idleCost": usd_text(row.idle_usd),
        "totalCost": usd_text(row.total_usd),
        "efficiency": round(row.efficiency, 6),
        "costPer1kRequests": None if per_1k is None else usd_text(per_1k),
        "costPer1MTokens": None if per_1m is None else usd_text(per_1m),
    }


def deployment_json(totals: DeploymentTotals) -> dict[str, Any]:
    """One deployment's provisioned, used and idle cost and GPU-hours (whatever the grouping); the
    shown idle GPU-hours are the shown provisioned less the shown used, so the figures add up."""
    gpu, used = totals.gpu_hours.quantize(_HOURS), totals.used_gpu_hours.quantize(_HOURS)
    return {
        "deployment": totals.deployment,
        "profile": totals.profile,
        "accelerator": totals.accelerator,
        "replicas": totals.replicas,
        "provisionedCost": usd_text(totals.provisioned_usd),
        "usedCost": usd_text(totals.used_usd),
        "idleCost": usd_text(totals.idle_usd),
        "provisionedSeconds": round(totals.provisioned_seconds, 6),
        "busySeconds": round(totals.busy_seconds, 6),
        "gpuHours": str(gpu),
        "usedGpuHours": str(used),
        "idleGpuHours": str(gpu - used),
        "efficiency": round(totals.efficiency, 6),
    }


def report_json(report: AllocationReport) -> dict[str, Any]:
    """OpenCost-like: the window, one entry per row (the idle row named `__idle__`), and totals."""
    result, query = report.allocation, report.query
    return {
        "window": {"start": iso_time(query.start), "end": iso_time(query.end)},
        "aggregate": list(query.by),
        "idle": query.idle,
        "rows": [row_json(r, query.by) for r in result.rows],
        "totals": {
            "provisionedCost": usd_text(result.provisioned_usd),
            "usedCost": usd_text(result.used_usd),
            "idleCost": usd_text(result.idle_usd),
            "provisionedSeconds": round(result.provisioned_seconds, 6),
            "busySeconds": round(result.busy_seconds, 6),
            "efficiency": round(result.efficiency, 6),
        },
        "deployments": [deployment_json(d) for d in result.deployments],
        "pricing": result.bases,
        "records": {"scanned": report.scanned, "skipped": report.skipped, "dropped": report.dropped},
        "notes": report.notes,
    }
