"""`/metrics` writes the labelled counters, gauges and histograms from their children, each child's
label text made once: the same bytes as prometheus_client's `generate_latest`, without a sample and
a label dict per line for the garbage collector to walk (issue 14 item 2)."""

from __future__ import annotations

import gc
from collections.abc import Iterable

import prometheus_client as prom
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from costwarden.observability.exposition import Exposition
from costwarden.observability.metrics import GatewayMetrics, Observe
from tests.unit.observability.test_metrics import exchange, observe, organisation


class Queue(Collector):
    def collect(self) -> Iterable[GaugeMetricFamily]:
        yield GaugeMetricFamily("queue_depth", "Depth.", value=3.0)


async def test_the_exposition_is_generate_latests_text_byte_for_byte() -> None:
    registry = prom.CollectorRegistry()
    metrics = GatewayMetrics(registry)
    for collector in (prom.PROCESS_COLLECTOR, prom.GC_COLLECTOR):  # their values move between two renders
        registry.unregister(collector)
    stage = Observe(metrics)
    await observe(stage, [exchange(n, f"team-{n % 7}", f"dep-{n % 3}") for n in range(40)])
    odd = ("dep-\\x", 'te"am\nnew', "proj ünï", "prod")  # escaped label values, non-ASCII
    metrics.child(metrics.requests, (*odd, "served")).inc(2.5)
    metrics.child(metrics.cost, odd).inc(1e-9)
    metrics.child(metrics.inflight, ("dep-0",)).dec(3)
    metrics.child(metrics.duration, ("dep-0", "served", "gateway")).observe(float("inf"))
    prom.Counter("plain", "No labels.", registry=registry).inc()
    prom.Gauge("level", "A gauge\\ with\nescapes.", ["kind"], registry=registry).labels("a").set(-0.5)
    prom.Gauge("never_set", "A labelled gauge with no child.", ["kind"], registry=registry)
    negative = prom.Histogram("offsets", "Negative buckets.", ["side"], buckets=(-1.0, 0.0, 1.0), registry=registry)
    negative.labels("left").observe(-0.5)
    prom.Info("build_extra", "Info.", registry=registry).info({"a": "b"})
    registry.register(Queue())
    exposition = Exposition(registry)
    assert await exposition.render() == prom.generate_latest(registry)
    metrics.child(metrics.requests, (*odd, "served")).inc()  # a later scrape: the kept label texts
    assert await exposition.render() == prom.generate_latest(registry)


async def test_a_scrape_of_an_organisation_leaves_the_collector_next_to_nothing_to_walk() -> None:
    """10,000 scopes (500 teams x 20 deployments, 1,000 kept): generate_latest made a sample tuple
    per line, alive until its family was written: 17 young collections a render here (and, once
    promoted, a full collection every few scrapes). The label texts are made at the first scrape;
    later ones allocate strings, which the collector does not track."""
    registry, _ = await organisation()
    exposition = Exposition(registry)
    await exposition.render()  # the first scrape makes each child's label text
    collections: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.collect()
    gc.callbacks.append(count)
    try:
        body = await exposition.render()
    finally:
        gc.callbacks.remove(count)
    assert len(body) > 500_000
    assert len(collections) <= 1, collections
