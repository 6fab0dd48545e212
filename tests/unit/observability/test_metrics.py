"""The cardinality budget of `/metrics`, its size at organisation scale, and exposition off the loop."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Iterable
from decimal import Decimal
from subprocess import PIPE, STDOUT

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from costwarden.chain.exchange import Exchange
from costwarden.chain.target import Route
from costwarden.config.metrics import MetricsConfig
from costwarden.config.models import Deployment
from costwarden.domain.keys import KeyIdentity
from costwarden.domain.record import Outcome, Protocol
from costwarden.domain.usage import Usage
from costwarden.observability.exposition import Exposition
from costwarden.observability.metrics import BUCKETS, OTHER, GatewayMetrics, Observe
from tests.conftest import need

CHAT = "/v1/chat/completions"
ROUTES: dict[str, Route] = {}


def route(name: str) -> Route:
    if name not in ROUTES:
        ROUTES[name] = Route.of(Deployment(name=name, protocol="openai", upstream="http://127.0.0.1:9/v1"))
    return ROUTES[name]


def exchange(n: int, team: str, deployment: str, outcome: Outcome = Outcome.SERVED) -> Exchange:
    ex = Exchange(f"r{n}", "POST", CHAT, b"", [], b"{}", Protocol.OPENAI, CHAT)
    ex.identity = KeyIdentity(key_id=f"k{n}", team=team, project=f"{team}-app", environment="prod")
    ex.route = route(deployment)
    ex.outcome = outcome
    ex.latency_ms = 12.5
    ex.upstream_seconds = 0.01
    ex.usage = Usage(input_tokens=100, output_tokens=20, cached_tokens=5)
    ex.cost = Decimal("0.000123")
    return ex


async def observe(stage: Observe, exchanges: Iterable[Exchange]) -> None:
    for ex in exchanges:
        await stage.enter(ex)
        await stage.finish(ex)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    assert found is not None, (name, labels)
    return found


async def test_scopes_past_the_cap_fold_into_other_and_are_counted() -> None:
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry, MetricsConfig(max_label_sets=3))
    stage = Observe(metrics)
    teams = ["a", "b", "c", "d", "e"]
    await observe(stage, [exchange(i, team, "chat") for i, team in enumerate(teams)])
    await observe(stage, [exchange(10, "a", "chat"), exchange(11, "e", "embed")])  # one kept, one more folded
    kept = {"deployment": "chat", "project": "a-app", "environment": "prod"}
    assert value(registry, "costwarden_requests_total", team="a", outcome="served", **kept) == 2
    for team in ("b", "c"):
        assert value(registry, "costwarden_tokens_total", **{**kept, "team": team, "project": f"{team}-app"},
                     direction="output") == 20  # fmt: skip
    other = {"team": OTHER, "project": OTHER, "environment": OTHER}
    assert value(registry, "costwarden_requests_total", deployment="chat", outcome="served", **other) == 2
    assert value(registry, "costwarden_requests_total", deployment="embed", outcome="served", **other) == 1
    assert value(registry, "costwarden_cost_usd_total", deployment="chat", **other) == pytest.approx(0.000246)
    assert value(registry, "costwarden_metric_label_overflow_total") == 3
    assert registry.get_sample_value("costwarden_requests_total", {**kept, "team": "d", "outcome": "served"}) is None
    assert len(metrics.budget) == 3


async def test_latency_histograms_carry_only_the_configured_labels() -> None:
    registry = CollectorRegistry()
    stage = Observe(GatewayMetrics(registry))
    await observe(stage, [exchange(1, "a", "chat"), exchange(2, "b", "chat", Outcome.REJECTED)])
    served = {"deployment": "chat", "outcome": "served", "phase": "gateway"}
    assert value(registry, "costwarden_request_duration_seconds_count", **served) == 1
    assert value(registry, "costwarden_request_duration_seconds_bucket", **served, le="0.025") == 1
    assert value(registry, "costwarden_request_duration_seconds_bucket", **served, le="0.01") == 0
    text = (await Exposition(registry).render()).decode()
    assert 'le="0.0001"' in text and 'le="600.0"' in text and BUCKETS[0] == 0.0001 and BUCKETS[-1] == 600
    histogram_lines = [line for line in text.splitlines() if line.startswith("costwarden_request_duration")]
    assert histogram_lines and not any("team=" in line for line in histogram_lines)
    by_team = CollectorRegistry()
    custom = Observe(GatewayMetrics(by_team, MetricsConfig(histogram_labels=("team",))))
    await observe(custom, [exchange(3, "a", "chat")])
    assert value(by_team, "costwarden_request_duration_seconds_count", team="a", phase="upstream") == 1


def test_histogram_labels_are_checked() -> None:
    with pytest.raises(ValueError, match="repeat"):
        MetricsConfig(histogram_labels=("team", "team"))
    with pytest.raises(ValueError):
        MetricsConfig.model_validate({"histogram_labels": ["key_id"]})
    with pytest.raises(ValueError):
        MetricsConfig(max_label_sets=0)


async def organisation(teams: int = 500, deployments: int = 20) -> tuple[CollectorRegistry, GatewayMetrics]:
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    stage = Observe(metrics)
    n = 0
    for t in range(teams):
        for d in range(deployments):
            n += 1
            await observe(stage, [exchange(n, f"team-{t:03d}", f"deployment-{d:02d}")])
    return registry, metrics


async def test_an_organisation_of_500_teams_by_20_deployments_scrapes_under_2_mb() -> None:
    registry, metrics = await organisation()
    started = time.perf_counter()
    body = await Exposition(registry).render()
    elapsed = time.perf_counter() - started
    text = body.decode()
    assert len(body) < 2_000_000, len(body)
    assert "_created" not in text
    assert value(registry, "costwarden_metric_label_overflow_total") == 500 * 20 - len(metrics.budget)
    # Every request is still counted: the kept scopes plus `other` add up to all of them.
    total = sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("costwarden_requests_total{")
    )
    assert total == 500 * 20
    assert elapsed < 2.0  # the budget is 100 ms (bench/scale_keys_metrics.py); generous for a loaded CI box


async def test_promtool_accepts_the_exposition() -> None:
    need(shutil.which("promtool") is not None, "promtool (scripts/test installs it: scripts/setup-debian-tool)")
    registry, _ = await organisation(teams=20, deployments=3)
    body = await Exposition(registry).render()
    promtool = await asyncio.create_subprocess_exec(
        "promtool", "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=STDOUT
    )
    said, _ = await asyncio.wait_for(promtool.communicate(body), timeout=60)
    # promtool lints too (exit 3 on lint problems only): fail on either, showing what it said.
    assert promtool.returncode == 0, said.decode()


class SlowCollector(Collector):
    """Takes its time, and notes the thread it was collected on and how often."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.threads: list[int] = []

    def collect(self) -> Iterable[GaugeMetricFamily]:
        self.threads.append(threading.get_ident())
        time.sleep(self.seconds)
        gauge = GaugeMetricFamily("slow_gauge", "A gauge that is slow to read.")
        gauge.add_metric([], 1.0)
        yield gauge


async def test_a_scrape_renders_off_the_event_loop_and_concurrent_scrapes_share_it() -> None:
    registry = CollectorRegistry()
    slow = SlowCollector(0.3)
    registry.register(slow)
    exposition = Exposition(registry)
    ticks = 0

    async def probe() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    prober = asyncio.create_task(probe())
    abandoned = asyncio.create_task(exposition.render())
    scrapes = [asyncio.create_task(exposition.render()) for _ in range(3)]
    await asyncio.sleep(0.05)
    abandoned.cancel()  # a scraper that hangs up does not cancel the render the others wait for
    bodies = await asyncio.gather(*scrapes)
    prober.cancel()
    assert all(b"slow_gauge 1.0" in body for body in bodies)
    assert len(slow.threads) == 1 and slow.threads[0] != threading.get_ident()
    assert ticks >= 10  # the loop kept running while the collector slept in its thread
    assert b"slow_gauge 1.0" in await exposition.render()  # a later scrape renders afresh
    assert len(slow.threads) == 2


async def test_a_scope_and_outcome_find_their_children_in_one_lookup_made_as_first_used() -> None:
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    stage = Observe(metrics)
    refused = exchange(1, "a", "chat", Outcome.REJECTED)
    refused.upstream_seconds, refused.usage, refused.cost = None, Usage(), Decimal(0)
    await observe(stage, [refused])
    scope = ("chat", "a", "a-app", "prod")
    series = metrics.series(scope, "rejected")
    assert metrics.series(scope, "rejected") is series  # made once per (scope, outcome)
    assert set(series) == {"requests", "gateway"}  # nothing else counted: no zero series exported
    assert registry.get_sample_value("costwarden_tokens_total", {"deployment": "chat", "team": "a",
        "project": "a-app", "environment": "prod", "direction": "input"}) is None  # fmt: skip
    await observe(stage, [exchange(2, "a", "chat")])
    served = metrics.series(scope, "served")
    assert set(served) == {"requests", "gateway", "upstream", "overhead", "input", "output", "cached", "cost"}
    assert served["requests"] is metrics.child(metrics.requests, (*scope, "served"))
    assert value(registry, "costwarden_request_duration_seconds_count", deployment="chat", outcome="served",
                 phase="overhead") == 1  # fmt: skip
