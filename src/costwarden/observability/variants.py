"""Prometheus view of degrade: which budgets are degraded, switches, and variant fallbacks.

Read from the degrade loop and the variant forward step when scraped.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from costwarden.services.degrade import DegradeWatch
from costwarden.upstream.variant import VariantForward


class VariantCollector(Collector):
    def __init__(self, watch: DegradeWatch, forward: VariantForward) -> None:
        self._watch = watch
        self._forward = forward

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        degraded = GaugeMetricFamily(
            "costwarden_variant_degraded",
            "While a degrade budget is degraded, its level: 1 moves eligible requests to their first variant, "
            "2 to the second, and so on.",
            labels=["budget"],
        )
        for budget, level in sorted(self._watch.degraded.items()):
            degraded.add_metric([budget], float(level))
        yield degraded
        switches = CounterMetricFamily(
            "costwarden_variant_switches",
            "Switches of degrade budgets seen by this replica while leading: degraded, deeper, shallower, recovered.",
            labels=["budget", "to"],
        )
        for (budget, to), count in sorted(self._watch.switches.items()):
            switches.add_metric([budget, to], count)
        yield switches
        fallbacks = CounterMetricFamily(
            "costwarden_variant_fallbacks",
            "Degraded requests the original served because the variant's upstream was unreachable.",
            labels=["deployment", "variant"],
        )
        for (deployment, variant), count in sorted(self._forward.fallbacks.items()):
            fallbacks.add_metric([deployment, variant], count)
        yield fallbacks
