"""Prometheus view of scale-out capped by budget: the replicas the gateway asks for and the demand
behind it, per deployment with `compute.scaling` (labels from config only), as of the governor's
last tick. `costwarden_scaling_replicas` is what an HPA reads through an external-metrics adapter."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from costwarden.services.scaling import Scaled


class ScalingMetrics(Collector):
    def __init__(self, last: Callable[[], Mapping[str, Scaled]]) -> None:
        self._last = last

    def collect(self) -> Iterable[GaugeMetricFamily]:
        replicas = GaugeMetricFamily(
            "costwarden_scaling_replicas",
            "Replicas a deployment should run: demand capped by what its budget can pay for, within min/max.",
            labels=["deployment"],
        )
        demand = GaugeMetricFamily(
            "costwarden_scaling_demand_replicas",
            "Replicas a deployment's in-flight requests and throughput call for, before bounds and the budget cap.",
            labels=["deployment"],
        )
        for deployment, scaled in sorted(self._last().items()):
            replicas.add_metric([deployment], scaled.decision.replicas)
            demand.add_metric([deployment], scaled.decision.demand)
        yield replicas
        yield demand
