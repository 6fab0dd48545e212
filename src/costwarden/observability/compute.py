"""Prometheus view of self-hosted compute: each deployment's replica cost per hour and running totals
of its cost, idle cost and GPU-seconds (services.compute_tally; labels from config only, never from
requests), and each compute collector's state and samples."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from costwarden.config.compute import PrometheusReplicas
from costwarden.config.hardware import resolve_profile
from costwarden.config.models import Config
from costwarden.domain.collector_status import CollectorStatus
from costwarden.services.compute_tally import ComputeTotals


class ComputeMetrics(Collector):
    def __init__(
        self,
        config: Config,
        statuses: Callable[[], list[CollectorStatus]],
        totals: Callable[[], Mapping[tuple[str, str], ComputeTotals]] = dict,
    ) -> None:
        self._totals = totals
        self._hourly: list[tuple[str, str, float]] = []
        self._counted: list[tuple[str, str, Decimal]] = []  # replicas from Prometheus: the price of one
        for dep in config.deployments:
            compute = dep.compute
            profile = resolve_profile(compute.profile, config.hardware) if compute is not None else None
            if compute is None or profile is None:
                continue
            price = profile.hourly(compute.spot)
            if isinstance(compute.replicas, PrometheusReplicas):
                self._counted.append((dep.name, profile.name, price))
            else:
                self._hourly.append((dep.name, profile.name, float(price * compute.replicas)))
        self._statuses = statuses

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        hourly = GaugeMetricFamily(
            "costwarden_replica_hourly_cost_usd",
            "What a deployment's replicas cost per hour, busy or idle: replicas x the profile's price (USD).",
            labels=["deployment", "profile"],
        )
        for deployment, profile, usd in self._hourly:
            hourly.add_metric([deployment, profile], usd)
        tallied = self._totals()
        for deployment, profile, price in self._counted:  # the latest count the tally read, if any
            count = tallied[(deployment, profile)].replicas if (deployment, profile) in tallied else None
            if count is not None:
                hourly.add_metric([deployment, profile], float(price * count))
        yield hourly
        yield from self._tallied()
        up = GaugeMetricFamily(
            "costwarden_compute_collector_up",
            "1 while a compute collector runs, 0 when it is off.",
            labels=["collector"],
        )
        samples = CounterMetricFamily(
            "costwarden_compute_samples", "Samples a compute collector took and stored.", labels=["collector"]
        )
        for status in self._statuses():
            up.add_metric([status.name], 1.0 if status.running else 0.0)
            samples.add_metric([status.name], status.samples)
        yield up
        yield samples

    def _tallied(self) -> Iterable[CounterMetricFamily]:
        labels = ["deployment", "profile"]
        cost = CounterMetricFamily(
            "costwarden_compute_cost_usd",
            "Provisioned replica cost (replicas x profile price x time), from the allocation engine (USD).",
            labels=labels,
        )
        idle = CounterMetricFamily(
            "costwarden_idle_cost_usd", "The part of the replica cost no request used (USD).", labels=labels
        )
        gpu = CounterMetricFamily(
            "costwarden_gpu_seconds", "GPU-seconds the replicas held (accelerators x replicas x time).", labels=labels
        )
        uncounted = CounterMetricFamily(
            "costwarden_compute_uncounted_seconds",
            "Seconds of Prometheus-counted replicas with no replica count in Prometheus (gaps), not counted.",
            labels=labels,
        )
        for (deployment, profile), totals in sorted(self._totals().items()):
            cost.add_metric([deployment, profile], float(totals.compute_usd))
            idle.add_metric([deployment, profile], float(totals.idle_usd))
            gpu.add_metric([deployment, profile], float(totals.gpu_seconds))
            uncounted.add_metric([deployment, profile], float(totals.uncounted_seconds))
        yield cost
        yield idle
        yield gpu
        yield uncounted
