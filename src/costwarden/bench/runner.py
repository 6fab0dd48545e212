"""Run a bench plan: a probe, then repeated runs at one load or the rate search, into `Results`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

import costwarden
from costwarden.bench.exchange import Sample, Target, send
from costwarden.bench.loadgen import Load, run_load, session
from costwarden.bench.machine import machine_info
from costwarden.bench.payloads import Payload
from costwarden.bench.results import HardwareInfo, Results, Run, Search, TargetInfo
from costwarden.bench.summary import summarize_run
from costwarden.domain.hardware import HardwareProfile
from costwarden.domain.pricing import PriceSheet
from costwarden.domain.rate_search import RateSearch
from costwarden.domain.slo import Slo


class TargetDown(RuntimeError):
    """The probe request failed: nothing to bench."""


class Observer(Protocol):
    def run_started(self, label: str, expected: int | None) -> None: ...
    def sample(self, sample: Sample) -> None: ...
    def run_finished(self, run: Run) -> None: ...


@dataclass(frozen=True, slots=True)
class Plan:
    target: Target
    info: TargetInfo
    payloads: Sequence[Payload]
    load: Load
    repeats: int = 1
    slo: Slo | None = None
    search: RateSearch | None = None  # when set, `load.rate` is replaced by the search's rates
    sheet: PriceSheet | None = None
    hardware: HardwareProfile | None = None
    warmup: int = 1


async def probe(target: Target, payloads: Sequence[Payload], count: int) -> None:
    """Send `count` (at least one) requests first; raise TargetDown if the first cannot be served."""
    async with session(4, target.timeout_s) as client:
        for i in range(max(1, count)):
            sample = await send(client, target, payloads[i % len(payloads)], 0.0, 0.0)
            if i == 0 and not sample.ok:
                why = f"HTTP {sample.status}" if sample.status else sample.error
                raise TargetDown(f"{target.url} did not serve the first request ({why})")


async def execute(plan: Plan, observer: Observer) -> Results:
    await probe(plan.target, plan.payloads, plan.warmup)
    runs: list[Run] = []
    search_info: Search | None = None
    if plan.search is not None and plan.slo is not None:
        search = plan.search
        while (next_rate := search.next_rate()) is not None:
            load = replace(plan.load, rate=next_rate, concurrency=None)
            run = await _one(plan, load, f"rate {next_rate:g}/s", observer)
            runs.append(run)
            search = search.record(next_rate, run.slo_violations == [])
        best = next((r for r in runs if r.offered_rate == search.best), None)
        cost = best.cost if best is not None else None
        search_info = Search(slo=plan.slo.text, best_rate=search.best, steps=search.steps, cost=cost)
    else:
        for i in range(plan.repeats):
            label = f"repeat {i + 1}" if plan.repeats > 1 else "run"
            runs.append(await _one(plan, plan.load, label, observer))
    return Results(
        costwarden_version=costwarden.__version__,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        target=plan.info,
        parameters=_parameters(plan),
        machine=machine_info(),
        hardware=HardwareInfo.of(plan.hardware) if plan.hardware is not None else None,
        slo=plan.slo.text if plan.slo is not None else None,
        runs=runs,
        search=search_info,
    )


async def _one(plan: Plan, load: Load, label: str, observer: Observer) -> Run:
    expected = int(load.rate * load.duration_s) if load.rate is not None else load.requests
    observer.run_started(label, expected if load.requests is None else min(expected or load.requests, load.requests))
    samples, wall = await run_load(plan.target, plan.payloads, load, observer.sample)
    run = summarize_run(label, load, samples, wall, plan.sheet, plan.hardware, plan.slo)
    observer.run_finished(run)
    await asyncio.sleep(0)
    return run


def _parameters(plan: Plan) -> dict[str, str | int | float | bool | None]:
    load = plan.load
    return {
        "mode": "search" if plan.search is not None else load.mode,
        "rate": load.rate,
        "concurrency": load.concurrency,
        "arrival": load.arrival,
        "duration_s": load.duration_s,
        "requests": load.requests,
        "repeats": plan.repeats,
        "seed": load.seed,
        "payloads": len(plan.payloads),
        "warmup": plan.warmup,
        "timeout_s": plan.target.timeout_s,
        "search_start": plan.search.start if plan.search else None,
        "search_max": plan.search.max_rate if plan.search else None,
        "search_tolerance": plan.search.tolerance if plan.search else None,
    }
