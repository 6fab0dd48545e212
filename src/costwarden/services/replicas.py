"""Deployments with `replicas: {prometheus: "<PromQL>"}`: their replica count over an allocation's
window from a Prometheus range query (the `prometheus` collector's URL), provisioned as
Σ replicas(t) × step, exact in Decimal. No answer, or steps without data, are shown in the
report's notes and never filled in."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from costwarden.collectors.prometheus import QueryFailed, query_range
from costwarden.config.compute import DeploymentCompute, PrometheusCollector, PrometheusReplicas
from costwarden.config.hardware import resolve_profile
from costwarden.config.models import Config
from costwarden.domain.allocation_input import Provision
from costwarden.domain.hardware import HardwareProfile
from costwarden.domain.replicas import ReplicaSeconds, replica_seconds

MAX_POINTS = 10_000  # Prometheus answers at most 11,000 points per series


def priced(config: Config, compute: DeploymentCompute) -> HardwareProfile | None:
    """The deployment's profile as the allocation prices it: at its spot price where `spot` is set."""
    profile = resolve_profile(compute.profile, config.hardware)
    if profile is not None and compute.spot and profile.spot_hourly_usd is not None:
        profile = replace(profile, hourly_usd=profile.spot_hourly_usd, price_source=f"{profile.price_source}, spot")
    return profile


def prometheus_source(config: Config) -> PrometheusCollector | None:
    return next((c for c in config.compute.collectors if isinstance(c, PrometheusCollector)), None)


async def replica_window(
    source: PrometheusCollector, spec: PrometheusReplicas, start: float, end: float
) -> tuple[ReplicaSeconds, float, float]:
    """The replica-seconds over [start, end) (start cut to the millisecond Prometheus reads), the step
    and the start used. Raises QueryFailed (PromQL error, Prometheus down)."""
    step = max(spec.step_seconds, (end - start) / MAX_POINTS)
    lo = round(start, 3)
    url, timeout = str(source.url), source.timeout_seconds
    points = await asyncio.to_thread(query_range, url, spec.prometheus, lo, end, step, timeout)
    return replica_seconds(points, lo, end, step), step, lo


async def prometheus_provisions(config: Config, start: float, end: float) -> tuple[dict[str, Provision], list[str]]:
    found: dict[str, Provision] = {}
    notes: list[str] = []
    source = prometheus_source(config)
    for dep in config.deployments:
        if dep.compute is None or not isinstance(dep.compute.replicas, PrometheusReplicas):
            continue
        profile = priced(config, dep.compute)
        if profile is None:  # provisions() notes it
            continue
        if source is None:
            notes.append(f"{dep.name}: replicas come from Prometheus, but no `prometheus` collector gives its URL; "
                         "not allocated")  # fmt: skip
            continue
        try:
            seen, step, _ = await replica_window(source, dep.compute.replicas, start, end)
        except QueryFailed as exc:
            notes.append(f"{dep.name}: replica count unknown ({exc}); not allocated")
            continue
        if not seen.covered_seconds:
            notes.append(f"{dep.name}: Prometheus has no replica count over the window; not allocated")
            continue
        if seen.gaps:
            notes.append(f"{dep.name}: {seen.gaps} step(s) of {step:g} s without a replica count in Prometheus; "
                         "that time is not counted (a gap)")  # fmt: skip
        found[dep.name] = Provision(profile, max(seen.peak, 1), seen.replica_seconds)
    return found, notes
