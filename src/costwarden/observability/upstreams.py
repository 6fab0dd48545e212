"""Prometheus view of the upstreams: which are in service, attempts by result, fallbacks used.

Read from the balancer when scraped; the request path only bumps two dict counters. Upstreams
are labelled by their index in the deployment's `upstreams` list, not by address: `/metrics` is
served on the gateway's port, and internal addresses are not for clients.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from costwarden.upstream.balancer import Balancer


class UpstreamCollector(Collector):
    def __init__(self, balancer: Balancer) -> None:
        self._balancer = balancer

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        in_service = GaugeMetricFamily(
            "costwarden_upstream_in_service",
            "1 while the upstream is in service, 0 while ejected (passive health).",
            labels=["deployment", "upstream"],
        )
        for deployment, index, up in self._balancer.in_service():
            in_service.add_metric([deployment, str(index)], 1.0 if up else 0.0)
        yield in_service
        attempts = CounterMetricFamily(
            "costwarden_upstream_attempts",
            "Requests sent to an upstream, by result: answered, failed (5xx, timeout, broken answer), "
            "not_sent (could not connect: tried on the next upstream), no_verdict (the client left).",
            labels=["deployment", "result"],
        )
        for (deployment, result), count in sorted(self._balancer.attempts.items()):
            attempts.add_metric([deployment, result], count)
        yield attempts
        fallbacks = CounterMetricFamily(
            "costwarden_fallbacks", "Requests served by a fallback deployment.", labels=["requested", "served"]
        )
        for (requested, served), count in sorted(self._balancer.fallbacks.items()):
            fallbacks.add_metric([requested, served], count)
        yield fallbacks
