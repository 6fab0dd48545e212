"""Deployments with `replicas: {prometheus: "<PromQL>"}`: their replica count over an allocation's
window from a Prometheus range query (the `prometheus` collector's URL), provisioned as
Σ replicas(t) × step, exact in Decimal. No answer, or steps without data, are shown in the
report's notes and never filled in."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from costwarden.collectors.prometheus import QueryFailed, query_range
from costwarden.config.compute import PrometheusCollector, PrometheusReplicas
from costwarden.config.hardware import resolve_profile
from costwarden.config.models import Config
from costwarden.domain.allocation_input import Provision
from costwarden.domain.replicas import replica_seconds

MAX_POINTS = 10_000  # Prometheus answers at most 11,000 points per series


async def prometheus_provisions(config: Config, start: float, end: float) -> tuple[dict[str, Provision], list[str]]:
    found: dict[str, Provision] = {}
    notes: list[str] = []
    source = next((c for c in config.compute.collectors if isinstance(c, PrometheusCollector)), None)
    for dep in config.deployments:
        if dep.compute is None or not isinstance(dep.compute.replicas, PrometheusReplicas):
            continue
        profile = resolve_profile(dep.compute.profile, config.hardware)
        if profile is None:  # provisions() notes it
            continue
        if source is None:
            notes.append(f"{dep.name}: replicas come from Prometheus, but no `prometheus` collector gives its URL; "
                         "not allocated")  # fmt: skip
            continue
        if dep.compute.spot and profile.spot_hourly_usd is not None:
            profile = replace(profile, hourly_usd=profile.spot_hourly_usd, price_source=f"{profile.price_source}, spot")
        spec = dep.compute.replicas
        step = max(spec.step_seconds, (end - start) / MAX_POINTS)
        lo = round(start, 3)
        try:
            points = await asyncio.to_thread(
                query_range, str(source.url), spec.prometheus, lo, end, step, source.timeout_seconds
            )
        except QueryFailed as exc:
            notes.append(f"{dep.name}: replica count unknown ({exc}); not allocated")
            continue
        seen = replica_seconds(points, lo, end, step)
        if not seen.covered_seconds:
            notes.append(f"{dep.name}: Prometheus has no replica count over the window; not allocated")
            continue
        if seen.gaps:
            notes.append(f"{dep.name}: {seen.gaps} step(s) of {step:g} s without a replica count in Prometheus; "
                         "that time is not counted (a gap)")  # fmt: skip
        found[dep.name] = Provision(profile, max(seen.peak, 1), seen.replica_seconds)
    return found, notes
