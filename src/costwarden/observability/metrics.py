"""Prometheus metrics of the request path, as a chain stage.

Label values come only from config (deployment names) and keys (team, project, environment,
validated against config when the key is made) and a fixed outcome set, never from client
strings, so cardinality is bounded. Label children are cached per label tuple.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from costwarden.chain.exchange import Exchange
from costwarden.chain.stage import PassStage

SCOPE = ("deployment", "team", "project", "environment")
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
NONE = "none"


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "costwarden_requests", "Requests that reached the gateway.", [*SCOPE, "outcome"], registry=registry
        )
        self.duration = Histogram(
            "costwarden_request_duration_seconds",
            "Request duration: `gateway` is the whole request, `upstream` the time spent upstream.",
            [*SCOPE, "phase"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.tokens = Counter("costwarden_tokens", "Tokens metered.", [*SCOPE, "direction"], registry=registry)
        self.cost = Counter("costwarden_cost_usd", "Cost attributed, in USD.", SCOPE, registry=registry)
        self.inflight = Gauge("costwarden_inflight_requests", "Requests being forwarded now.", SCOPE, registry=registry)
        self.implausible = Counter(
            "costwarden_upstream_usage_implausible",
            "Responses whose reported usage was beyond what the request could use (bounded, recorded as a fault).",
            ["deployment"],
            registry=registry,
        )
        self._children: dict[tuple[Any, ...], Any] = {}

    def child(self, metric: Any, labels: tuple[str, ...]) -> Any:
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found


def scope_of(exchange: Exchange) -> tuple[str, str, str, str]:
    identity = exchange.identity
    return (
        exchange.deployment_name or NONE,
        identity.team if identity else NONE,
        identity.project if identity else NONE,
        identity.environment if identity else NONE,
    )


class Observe(PassStage):
    """Counts every request; tracks in-flight requests from routing to settlement."""

    name = "observe"

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._m = metrics
        self._inflight: dict[str, tuple[str, str, str, str]] = {}

    async def enter(self, exchange: Exchange) -> None:
        scope = scope_of(exchange)
        self._inflight[exchange.request_id] = scope
        self._m.child(self._m.inflight, scope).inc()

    async def settle(self, exchange: Exchange) -> None:
        m = self._m
        entered = self._inflight.pop(exchange.request_id, None)
        if entered is not None:
            m.child(m.inflight, entered).dec()
        scope = scope_of(exchange)
        m.child(m.requests, (*scope, exchange.outcome.value)).inc()
        m.child(m.duration, (*scope, "gateway")).observe(exchange.latency_ms / 1000.0)
        if exchange.upstream_seconds is not None:
            m.child(m.duration, (*scope, "upstream")).observe(exchange.upstream_seconds)
        usage = exchange.usage
        if usage.input_tokens:
            m.child(m.tokens, (*scope, "input")).inc(usage.input_tokens)
        if usage.output_tokens:
            m.child(m.tokens, (*scope, "output")).inc(usage.output_tokens)
        if usage.cached_tokens:
            m.child(m.tokens, (*scope, "cached")).inc(usage.cached_tokens)
        if exchange.cost:
            m.child(m.cost, scope).inc(float(exchange.cost))


def count_implausible(metrics: GatewayMetrics) -> Callable[[Exchange], None]:
    """The callback of chain/bound.py: one increment per response with implausible usage."""

    def count(exchange: Exchange) -> None:
        metrics.child(metrics.implausible, (exchange.deployment_name or NONE,)).inc()

    return count


class LedgerState(Protocol):
    """What the recorder exposes for scraping (see storage/recorder.py)."""

    written: int
    failures: int
    quarantined: int
    adopted: int

    @property
    def backlog(self) -> int: ...

    def oldest_wait(self) -> float: ...


class LedgerCollector(Collector):
    """The ledger's progress, read from the recorder when scraped: nothing on the request path."""

    def __init__(self, recorder: Callable[[], LedgerState | None]) -> None:
        self._recorder = recorder

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        recorder = self._recorder()
        if recorder is None:
            return
        for name, text, value in (
            ("written", "Records written to the ledger.", recorder.written),
            ("write_failures", "Ledger flushes that failed and will be retried.", recorder.failures),
            ("quarantined", "Records the ledger refused as data, kept in ledger_quarantine.", recorder.quarantined),
            ("spools_adopted", "Spool folders of stopped gateways replayed by this one.", recorder.adopted),
        ):
            yield CounterMetricFamily(f"costwarden_ledger_{name}", text, value=value)
        backlog = recorder.backlog
        yield GaugeMetricFamily("costwarden_ledger_backlog", "Records spooled, not yet in the ledger.", value=backlog)
        yield GaugeMetricFamily(
            "costwarden_ledger_oldest_wait_seconds",
            "How long the oldest record not yet in the ledger has waited.",
            value=recorder.oldest_wait(),
        )
