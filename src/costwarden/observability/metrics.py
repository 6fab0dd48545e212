"""Prometheus metrics of the request path, as a chain stage, within a cardinality budget.

Label values come only from config (deployment names) and keys (team, project, environment,
validated against config when the key is made) and a fixed outcome set, never from client
strings. Counters carry the whole scope, up to `metrics.max_label_sets` distinct scopes; later
scopes fold into team/project/environment `other`. Latency histograms carry only the configured
labels (deployment and outcome by default), because each histogram series costs a line per bucket.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from costwarden.chain.exchange import Exchange
from costwarden.chain.stage import PassStage
from costwarden.config.metrics import MetricsConfig
from costwarden.domain.savings import acted
from costwarden.domain.usage import UNIT_FIELDS

SCOPE = ("deployment", "team", "project", "environment")
# 0.1 ms (a refusal at admission) to 10 min (a long generation), about 2.5x apart.
BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)
# Time to the first streamed event: a cached prefix answers in tens of ms, a queued one in minutes.
FIRST_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
NONE = "none"
OTHER = "other"
PHASES = ("gateway", "upstream", "overhead")

Scope = tuple[str, str, str, str]


class LabelBudget:
    """Admits at most `limit` distinct scopes, first come first kept (a series never disappears);
    a scope past the limit is reported as its deployment with team/project/environment `other`."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._admitted: set[Scope] = set()

    def admit(self, scope: Scope) -> tuple[Scope, bool]:
        """The scope to label with, and whether it was folded into `other`."""
        if scope in self._admitted:
            return scope, False
        if len(self._admitted) < self._limit:
            self._admitted.add(scope)
            return scope, False
        return (scope[0], OTHER, OTHER, OTHER), True

    def __len__(self) -> int:
        return len(self._admitted)


class Series(dict[str, Any]):
    """The children one (scope, outcome) counts into, by name: `requests`, `cost`, the duration's
    phases (`gateway`, `upstream`, `overhead`) and the token directions (`input`, `output`,
    `cached`). Each is made on its first use (no series appears before something counts into it),
    then found with one dict lookup."""

    __slots__ = ("_metrics", "_outcome", "_scope")

    def __init__(self, metrics: GatewayMetrics, scope: Scope, outcome: str) -> None:
        super().__init__()
        self._metrics, self._scope, self._outcome = metrics, scope, outcome

    def __missing__(self, name: str) -> Any:
        m, scope = self._metrics, self._scope
        if name == "requests":
            child = m.child(m.requests, (*scope, self._outcome))
        elif name == "cost":
            child = m.child(m.cost, scope)
        elif name in PHASES:
            child = m.child(m.duration, (*m.histogram_values(scope, self._outcome), name))
        else:
            child = m.child(m.tokens, (*scope, name))
        self[name] = child
        return child


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry, config: MetricsConfig | None = None) -> None:
        config = config or MetricsConfig()
        self.budget = LabelBudget(config.max_label_sets)
        self.histogram_labels = config.histogram_labels
        self.requests = Counter(
            "costwarden_requests", "Requests that reached the gateway.", [*SCOPE, "outcome"], registry=registry
        )
        self.duration = Histogram(
            "costwarden_request_duration_seconds",
            "Request duration: `gateway` is the whole request, `upstream` the time spent upstream, "
            "`overhead` the gateway's own share (gateway minus upstream) of requests that went upstream.",
            [*config.histogram_labels, "phase"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.first_token = Histogram(
            "costwarden_time_to_first_token_seconds",
            "Streams: time from the request's arrival to the first event relayed to the client.",
            ["deployment"],
            buckets=FIRST_TOKEN_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter("costwarden_tokens", "Tokens metered.", [*SCOPE, "direction"], registry=registry)
        self.units = Counter(
            "costwarden_units", "Modal units metered (docs/modalities.md).", [*SCOPE, "unit"], registry=registry
        )
        self.cost = Counter("costwarden_cost_usd", "Cost attributed, in USD.", SCOPE, registry=registry)
        self.saved = Counter(
            "costwarden_saved_usd",
            "What the cost actions saved, in USD: the cost without the action (cache, batch, degrade) less the cost "
            "(as `costwarden report --savings` sums it).",
            [*SCOPE, "action"],
            registry=registry,
        )
        self.inflight = Gauge(
            "costwarden_inflight_requests", "Requests being forwarded now.", ["deployment"], registry=registry
        )
        self.implausible = Counter(
            "costwarden_upstream_usage_implausible",
            "Responses whose reported usage was beyond what the request could use (bounded, recorded as a fault).",
            ["deployment"],
            registry=registry,
        )
        self.overflow = Counter(
            "costwarden_metric_label_overflow",
            "Requests counted under team/project/environment `other`: `metrics.max_label_sets` was reached.",
            registry=registry,
        )
        self._children: dict[tuple[Any, ...], Any] = {}
        self._series: dict[tuple[Scope, str], Series] = {}  # as many as scopes (bounded) x outcomes
        # The process's CPU, memory, file descriptors and Python's GC, as every exporter has them.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(collector)
        Info("costwarden_build", "The costwarden version serving.", registry=registry).info({"version": _version()})

    def child(self, metric: Any, labels: tuple[str, ...]) -> Any:
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def series(self, scope: Scope, outcome: str) -> Series:
        """The children one request of `scope` and `outcome` counts into, looked up once per pair."""
        found = self._series.get((scope, outcome))
        if found is None:
            found = self._series[scope, outcome] = Series(self, scope, outcome)
        return found

    def histogram_values(self, scope: Scope, outcome: str) -> tuple[str, ...]:
        values = {"deployment": scope[0], "team": scope[1], "project": scope[2], "environment": scope[3]}
        values["outcome"] = outcome
        return tuple(values[name] for name in self.histogram_labels)


def scope_of(exchange: Exchange) -> Scope:
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
        self._inflight: dict[str, str] = {}
        self._counts: dict[str, int] = {}  # deployment -> requests in flight (read by the scaling endpoint)

    def in_flight(self, deployment: str) -> int:
        """Requests of `deployment` in flight in this process now."""
        return self._counts.get(deployment, 0)

    async def enter(self, exchange: Exchange) -> None:
        deployment = exchange.deployment_name or NONE
        self._inflight[exchange.request_id] = deployment
        self._counts[deployment] = self._counts.get(deployment, 0) + 1
        self._m.child(self._m.inflight, (deployment,)).inc()

    async def finish(self, exchange: Exchange) -> None:
        m = self._m
        entered = self._inflight.pop(exchange.request_id, None)
        if entered is not None:
            self._counts[entered] -= 1
            m.child(m.inflight, (entered,)).dec()
        scope, folded = m.budget.admit(scope_of(exchange))
        if folded:
            m.overflow.inc()
        series = m.series(scope, exchange.outcome.value)  # one lookup for the children below
        series["requests"].inc()
        seconds = exchange.latency_ms / 1000.0
        series["gateway"].observe(seconds)
        upstream = exchange.upstream_seconds
        if upstream is not None:
            series["upstream"].observe(upstream)
            series["overhead"].observe(max(seconds - upstream, 0.0))
        if exchange.first_token_seconds is not None:
            m.child(m.first_token, (scope[0],)).observe(exchange.first_token_seconds)
        usage = exchange.usage
        if usage.input_tokens:
            series["input"].inc(usage.input_tokens)
        if usage.output_tokens:
            series["output"].inc(usage.output_tokens)
        if usage.cached_tokens:
            series["cached"].inc(usage.cached_tokens)
        if usage.reasoning_tokens or usage.modal:
            for unit in UNIT_FIELDS:
                if amount := getattr(usage, unit):
                    m.child(m.units, (*scope, unit)).inc(amount)
        if exchange.cost:
            series["cost"].inc(float(exchange.cost))
        if exchange.cache is not None or exchange.original_cost is not None:
            _count_saving(m, scope, exchange)


def _count_saving(m: GatewayMetrics, scope: Scope, exchange: Exchange) -> None:
    """What a cost action saved on this request (domain.savings.acted), as the savings report sums it."""
    batch = exchange.batch.batch_id if exchange.batch is not None else None
    found = acted(exchange.cache_avoided if exchange.cache is not None else None, batch, exchange.original_cost)
    if found is not None:
        action, without = found
        saved = without - exchange.cost  # a counter never falls: a variant dearer than its original counts 0
        m.child(m.saved, (*scope, action)).inc(float(saved) if saved > 0 else 0.0)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("costwarden")
    except PackageNotFoundError:  # running from a source tree
        return "unknown"


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
