"""The composition root: build every part from config, start and stop them in order."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, cast

from prometheus_client import CollectorRegistry

from costwarden.aio import load_aiohttp
from costwarden.alerts.dispatcher import AlertDispatcher
from costwarden.alerts.factory import build_dispatcher
from costwarden.app.batch_parts import BatchParts
from costwarden.app.shutdown import StopStep, stop_in_steps
from costwarden.chain.admit import Admit, StoreHealth
from costwarden.chain.attribute import Attribute
from costwarden.chain.authenticate import Authenticate
from costwarden.chain.bound import BoundUsage
from costwarden.chain.defer import Defer, PriorityAccess
from costwarden.chain.degrade import Degrade, DegradeScope
from costwarden.chain.meter import Meter
from costwarden.chain.order import Chain, assemble
from costwarden.chain.policy import policy_from_config
from costwarden.chain.record import Record, RecordSink
from costwarden.chain.route import RouteStage
from costwarden.chain.stage import Forward, Stage
from costwarden.chain.target import RouteTable
from costwarden.collectors.factory import build_collectors
from costwarden.config.models import Config
from costwarden.domain.alert import Alert, AlertKind, Condition, Severity
from costwarden.domain.budget import BudgetScope
from costwarden.domain.quarantine import Quarantined
from costwarden.domain.spike import SpikeDetector
from costwarden.observability.access_log import AccessLog, LoggedSink
from costwarden.observability.cache import CacheCollector
from costwarden.observability.compute import ComputeMetrics
from costwarden.observability.governance import GovernanceCollector
from costwarden.observability.metrics import GatewayMetrics, LedgerCollector, Observe, count_implausible
from costwarden.observability.scaling import ScalingMetrics
from costwarden.observability.upstreams import UpstreamCollector
from costwarden.observability.variants import VariantCollector
from costwarden.ports import CounterStore, CounterStoreUnavailable, ResponseCache, Store
from costwarden.services.batch_run import BatchAuthenticate
from costwarden.services.budgets import active_budgets
from costwarden.services.busy_folds import BusyFolder
from costwarden.services.compute import ComputeSampler, gaps_of
from costwarden.services.compute_tally import ComputeTally
from costwarden.services.degrade import DegradeWatch
from costwarden.services.governor import Governor
from costwarden.services.keyring import KeyRing
from costwarden.services.keys import config_key
from costwarden.services.readiness import LedgerReadiness
from costwarden.services.retention import RetentionLoop, prune_ledger
from costwarden.services.scaling import ScalingService
from costwarden.services.spikes import SpikeWatch
from costwarden.storage.breaker import CounterBreaker
from costwarden.storage.factory import (
    open_counters,
    open_lease,
    open_response_cache,
    open_samples,
    open_store,
    open_variant_state,
)
from costwarden.storage.recorder import Recorder
from costwarden.storage.spool import Spool
from costwarden.upstream.balancer import Balancer
from costwarden.upstream.cache import CacheForward
from costwarden.upstream.forwarder import Forwarder
from costwarden.upstream.lazy_session import LazySession
from costwarden.upstream.pool import UpstreamPool
from costwarden.upstream.variant import VariantForward

if TYPE_CHECKING:
    import aiohttp

    from costwarden.semantic.matcher import SemanticMatcher

log = logging.getLogger(__name__)
_STALL_FAILURES = 3  # consecutive failed flushes that make /readyz fail
_STOP_WARN_S = 10.0
_STEP_LIMIT_S = 5.0  # a stop step that loses nothing when cut short (Runtime.stop)


def degrade_scopes(config: Config) -> list[DegradeScope]:
    """Whom each `degrade` budget of the file moves (its scope less the exempt keys and teams)."""
    scopes = []
    for b in config.governance.budgets:
        rule = b.degrade_rule()
        if rule is not None:
            scope = BudgetScope.of(b.scope)
            keys, teams, pins = frozenset(rule.exempt_keys), frozenset(rule.exempt_teams), frozenset(rule.pin_keys)
            scopes.append(DegradeScope(b.id, scope, keys, teams, pins))
    return scopes


def priority_access(config: Config) -> PriorityAccess:
    """Who may queue a request with `X-Costwarden-Priority: batch` (batch.priority_keys / _teams)."""
    return PriorityAccess(frozenset(config.batch.priority_keys), frozenset(config.batch.priority_teams))


class Runtime:
    """Everything one gateway process owns. Built unstarted; `start` / `stop` bracket its life."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store: Store = open_store(config.storage.ledger, config.storage.partition)
        self.registry = CollectorRegistry()
        self.metrics = GatewayMetrics(self.registry, config.metrics)
        self.routes = RouteTable(config.deployments)
        self.balancer = Balancer(self.routes)
        self.registry.register(UpstreamCollector(self.balancer))
        self.keyring = KeyRing(
            self.store,
            [config_key(k) for k in config.keys],
            config.storage.key_refresh_seconds,
            config.storage.key_full_refresh_seconds,
        )
        self.started_at = time.time()
        self.health = StoreHealth()
        self.readiness = LedgerReadiness(self.store.ping)  # /readyz reads it: no database round trip per probe
        self.counters: CounterStore = open_counters(config.state, config.governance.breaker)
        self.policy = policy_from_config(config)
        self.lease = open_lease(config.state, ttl_s=config.governance.lease_ttl_s)
        # The response cache, when some deployment caches (docs/actions.md, "cache").
        self.cache_policies = {d.name: p for d in config.deployments if (p := d.cache.policy(config.cache)) is not None}
        self.response_cache: ResponseCache | None = (
            open_response_cache(config.cache, config.state) if self.cache_policies else None
        )
        self._semantic: SemanticMatcher | None = None
        self._admit: Admit | None = None
        self._governor: Governor | None = None
        self._alerts: AlertDispatcher | None = None
        self._session: aiohttp.ClientSession | None = None
        self._pool: UpstreamPool | None = None
        self._spool: Spool | None = None
        self._recorder: Recorder | None = None
        self._access_log: AccessLog | None = None
        self._tracing_shutdown: Callable[[], None] | None = None
        self._chain: Chain | None = None
        self._stages: dict[str, Stage] = {}
        self.degrade: DegradeWatch | None = None
        self.batch = BatchParts(config.batch, config.storage.ledger) if config.batch.enabled else None
        self.batch_service = self.batch.service if self.batch is not None else None
        self._enqueue = self.batch.enqueue if self.batch is not None else None  # realtime requests as jobs
        self._retention: RetentionLoop | None = None
        self.compute: ComputeSampler | None = None
        self._tally: ComputeTally | None = None
        self._busy_folds: BusyFolder | None = None
        self._observe = Observe(self.metrics)
        self.scaling = ScalingService(config, self.store, self._observe.in_flight)
        self.registry.register(ScalingMetrics(lambda: self.scaling.last))

    @property
    def recorder(self) -> Recorder:
        if self._recorder is None:
            raise RuntimeError("the runtime is not started")
        return self._recorder

    @property
    def chain(self) -> Chain:
        if self._chain is None:
            raise RuntimeError("the runtime is not started")
        return self._chain

    async def start(self) -> None:
        storage = self.config.storage
        await self.store.open()
        if self.batch is not None:
            await self.batch.queue.open()
        self._session = session = _client_session()
        if self.config.server.engine == "asgi":  # it forwards through aiohttp: loaded now, not by the first request
            await load_aiohttp()
        # A new leader takes the lease when it expires and adopts the firing alerts at its next tick.
        failover = self.lease.ttl_s + self.config.governance.evaluate_every_seconds
        self._alerts = build_dispatcher(self.config.alerts, self._session, self.store, failover)
        active = await self.store.list_alerts(True, 1000)  # the governor re-announces them if it leads
        self._alerts.start()  # before the spool replay, so a quarantine at start is alerted too
        self._spool = Spool(storage.spool_dir)
        self._recorder = Recorder(
            self.store,
            self._spool,
            storage.flush_interval_ms / 1000.0,
            storage.batch_size,
            on_quarantine=self._quarantine_alert,
            grouped=True,  # one spool write per loop turn, awaited before each last byte
        )
        self.registry.register(LedgerCollector(lambda: self._recorder))
        await self._recorder.recover()  # never raises: what it cannot write now waits for the next try
        await self.keyring.refresh()
        self._governor = self._build_governor(active)
        self._admit = Admit(
            self.policy,
            self.counters,
            self.health,
            settle_inline=self.config.state is None,
            reload=self._governor.reload,
            verify_unplanned=self.config.state is not None,  # another replica may create a budget
            enqueue=self._enqueue,
        )
        await self._governor.refresh_budgets()
        self.registry.register(
            GovernanceCollector(
                lambda: self.governor.views,
                self.health,
                lambda: self._admit.slot_usage if self._admit else {},
                self._alert_counts,
                self.counters if isinstance(self.counters, CounterBreaker) else None,
            )
        )
        try:
            await self._governor.rebuild(time.time())
        except CounterStoreUnavailable:
            log.error("the counter store is unreachable at start: budgets apply their fail mode until it is back")
        # engine: fast forwards to http:// upstreams on its own keep-alive httptools client
        self._pool = UpstreamPool() if self.config.server.engine == "fast" else None
        variant_forward = VariantForward(Forwarder(self._session, self.balancer, self._pool))
        self.degrade = self._build_degrade()
        self.registry.register(VariantCollector(self.degrade, variant_forward))
        self._stages = {
            "authenticate": Authenticate(self.keyring),
            "attribute": Attribute(),
            "route": RouteStage(self.routes, int(self.started_at)),
            "defer": Defer(self._enqueue, priority_access(self.config)),
            "degrade": Degrade(self.routes, degrade_scopes(self.config), self.degrade.current),
            "admit": self._admit,
            "observe": self._observe,
            "bound": BoundUsage(count_implausible(self.metrics)),
            "meter": Meter(),
            "record": Record(await self._record_sink()),
        }
        for trace in self._trace_stages():
            self._stages["trace"] = trace
        self._chain = self.chain_for(await self._cached(variant_forward))
        if self.batch is not None:  # its workers run jobs through the chain, authenticated by the batch's key
            batch_chain = self.chain_for(variant_forward, BatchAuthenticate(self.keyring))
            self.batch.build(batch_chain, session, self.registry, self.lease.lead)
        self._recorder.start(storage.adopt_orphans_seconds)
        await self.readiness.start()
        self.keyring.start()
        self._governor.start()
        self.degrade.start()
        if self.batch is not None:
            self.batch.start()
        retention = storage.retention
        if retention.raw_days is not None and retention.prune_every_seconds > 0:
            prune = functools.partial(prune_ledger, self.store, batch=retention.batch)
            self._retention = RetentionLoop(prune, self.lease.lead, retention.raw_days, retention.prune_every_seconds)
            self._retention.start()
        await self._start_compute()

    async def _start_compute(self) -> None:
        """The compute collectors, when configured (after the ledger is open: its migrations made the tables)."""
        if self.config.compute.collectors:
            compute = self.config.compute
            self.compute = ComputeSampler(
                build_collectors(self.config), open_samples(self.config.storage.ledger),
                compute.retention_days * 86400.0, gaps_of(self.config), compute.raw_retention_hours * 3600.0,
            )  # fmt: skip
            await self.compute.start()
        self._tally = tally = ComputeTally(
            self.config,
            self.lease.lead,
            lambda: self.compute.store if self.compute else None,
            self.config.compute.metrics_every_seconds,
            time.time(),
        )
        tally.start()
        self._busy_folds = BusyFolder(self.config, self.lease.lead)  # hourly folds for long allocations
        self._busy_folds.start()
        statuses = lambda: self.compute.statuses if self.compute else []  # noqa: E731
        self.registry.register(ComputeMetrics(self.config, statuses, lambda: tally.totals))

    async def _cached(self, forward: Forward) -> Forward:
        """The forward step wrapped by the response cache when one is configured."""
        if self.response_cache is None:
            return forward
        similar, shared = None, None
        if any(p.semantic for p in self.cache_policies.values()):  # the semantic extra, only then
            from costwarden.semantic.matcher import SemanticMatcher

            cache = self.config.cache
            shared = (cache.url or self.config.state) if cache.backend == "redis" else None  # the cache's own Redis
            self._semantic = similar = await asyncio.to_thread(SemanticMatcher.from_config, cache, shared)
            await similar.catch_up()
        cached = CacheForward(
            forward, self.response_cache, self.cache_policies, self.config.cache.max_entry_bytes, similar=similar
        )
        feed_errors = (lambda: similar.feed_errors) if similar is not None and shared else None
        self.registry.register(CacheCollector(cached, feed_errors))
        return cached

    def _build_degrade(self) -> DegradeWatch:
        gov = self.config.governance
        rules = {b.id: d.rule() for b in gov.budgets if (d := b.degrade_rule()) is not None}
        return DegradeWatch(
            rules,
            open_variant_state(self.config.state),
            lambda: self.governor.views,
            self.lease,
            self._alerts,
            min(1.0, gov.evaluate_every_seconds),
            firing=lambda: self.store.list_alerts(True, 1000),
        )

    def chain_for(self, forwarder: Forward, authenticate: Stage | None = None) -> Chain:
        """The same stages, in the one order, around a forward step (HTTP, or the gRPC listener's);
        `authenticate` replaces the first stage (batch jobs authenticate by the batch's key id)."""
        s = self._stages
        return assemble(
            authenticate=authenticate or s["authenticate"],
            attribute=s["attribute"],
            route=s["route"],
            defer=s["defer"],
            degrade=s["degrade"],
            admit=s["admit"],
            observe=s["observe"],
            trace=s.get("trace"),
            forward=forwarder,
            bound=s["bound"],
            meter=s["meter"],
            record=s["record"],
        )

    def _trace_stages(self) -> list[Stage]:
        """The trace stage when `observability.tracing` is enabled; OpenTelemetry is imported only then."""
        config = self.config.observability.tracing
        if not config.enabled:
            return []
        from costwarden.observability.tracing import Trace, provider

        made = provider(config)
        self._tracing_shutdown = made.shutdown
        return [Trace(made.get_tracer("costwarden"))]

    async def _record_sink(self) -> RecordSink:
        """The recorder, and the access log beside it when `observability.access_log` is enabled."""
        assert self._recorder is not None
        config = self.config.observability.access_log
        if not config.enabled:
            return self._recorder
        self._access_log = AccessLog(config)
        await self._access_log.start()
        self.registry.register(self._access_log)
        return LoggedSink(self._recorder, self._access_log)

    def _build_governor(self, active: list[Alert]) -> Governor:
        gov = self.config.governance
        lag = 2 * self.config.storage.flush_interval_ms / 1000.0 + 0.5  # records still being flushed
        spikes = None
        if gov.spikes.enabled:
            detector = SpikeDetector(
                window_seconds=gov.spikes.window_seconds,
                z_threshold=gov.spikes.z_threshold,
                consecutive=gov.spikes.consecutive,
                clear_windows=gov.spikes.clear_windows,
                warmup_windows=gov.spikes.warmup_windows,
                min_impact_usd=gov.spikes.min_impact_usd,
                shadow=gov.spikes.shadow,
            )
            spikes = SpikeWatch(detector, self.store, lag)
        assert self._alerts is not None
        return Governor(
            self.policy,
            self.counters,
            self.store,
            self.health,
            self._alerts,
            self.lease,
            gov.evaluate_every_seconds,
            spikes,
            active,
            budgets=lambda: active_budgets(self.store, self.config),
            rebuild_lag=lag,
            firing=lambda: self.store.list_alerts(True, 1000),  # it keeps those it owns (AlertOwner)
            scaling=self.scaling.conditions if self.scaling.deployments else None,
        )

    def _quarantine_alert(self, entries: Sequence[Quarantined]) -> None:
        """A quarantine is an event: one critical alert per batch of refused records."""
        if self._alerts is None:
            return
        first = entries[0]
        condition = Condition.of(
            AlertKind.LEDGER_QUARANTINE,
            {"request_id": first.request_id},
            Severity.CRITICAL,
            Decimal(len(entries)),
            Decimal(0),
            f"{len(entries)} ledger record(s) refused by the database and quarantined "
            f"(table ledger_quarantine), first {first.request_id}: {first.reason}",
        )
        self._alerts.submit([Alert.start(condition, time.time())])

    def _alert_counts(self) -> dict[str, int]:
        alerts = self._alerts
        if alerts is None:
            return {}
        return {"sent": alerts.sent, "failed": alerts.failed, "dropped": alerts.dropped}

    @property
    def governor(self) -> Governor:
        if self._governor is None:
            raise RuntimeError("the runtime is not started")
        return self._governor

    async def stop(self) -> None:
        """Stop every background task, flush the ledger and close the stores, step by step
        (`app/shutdown.py`). A step that may wait on something outside the process (a Redis, a
        database, a thread) and loses nothing when cut short is bounded by `_STEP_LIMIT_S`, so that a
        hung close never turns SIGTERM into SIGKILL; the steps that hold records or jobs (the batch
        workers, the recorder's last flush, the alerts' grace) are not cut. A stop still running after
        `_STOP_WARN_S` logs the step and every task's await chain."""
        await stop_in_steps(self._stop_steps(), step_limit_s=_STEP_LIMIT_S, warn_after_s=_STOP_WARN_S, log=log)

    def _stop_steps(self) -> list[StopStep]:
        """In the order a stop takes them: the loops first, then the ledger's last flush, then the
        clients and stores."""
        steps: list[tuple[str, bool, Callable[[], Awaitable[object]] | None]] = [
            ("the compute tally", True, self._tally.stop if self._tally else None),
            ("the busy-interval folds", True, self._busy_folds.stop if self._busy_folds else None),
            ("the compute collectors", True, self.compute.stop if self.compute else None),
            ("the batch workers", False, self.batch.stop if self.batch else None),
            ("the variant watch", True, self.degrade.stop if self.degrade else None),
            ("the retention loop", True, self._retention.stop if self._retention else None),
            ("the governor", True, self._governor.stop if self._governor else None),
            ("the key ring", True, self.keyring.stop),
            ("the ledger ping", True, self.readiness.stop),
            ("the recorder's last flush", False, self._recorder.stop if self._recorder else None),
            ("the access log", True, self._access_log.stop if self._access_log else None),
            ("the trace export", True, self._stop_tracing if self._tracing_shutdown else None),
            ("the admissions' settlement", True, self._admit.drain if self._admit else None),
            ("the alerts", False, self._stop_alerts if self._alerts else None),
            ("the counter store", True, self.counters.close),
            ("the lease", True, self.lease.close),
            ("the response cache", True, self.response_cache.close if self.response_cache else None),
            ("the semantic index", True, self._semantic.close if self._semantic else None),
            ("the upstream client", True, self._session.close if self._session else None),
            ("the upstream pool", True, self._pool.close if self._pool else None),
            ("the ledger store", True, self.store.close),
            ("the batch queue", True, self.batch.queue.close if self.batch else None),
        ]
        return [StopStep(name, step, bounded) for name, bounded, step in steps if step is not None]

    async def _stop_tracing(self) -> None:
        if self._tracing_shutdown is not None:
            await asyncio.to_thread(self._tracing_shutdown)  # exports the spans still batched

    async def _stop_alerts(self) -> None:
        if self._alerts is not None:
            await self._alerts.stop(grace_s=10)

    def ready(self) -> tuple[bool, dict[str, object]]:
        """Readiness from state kept by the process (no I/O: a probe answers while reports run)."""
        ledger = self.readiness.answering
        checks: dict[str, object] = {
            "ledger": ledger,
            "deployments": len(self.routes.names()),
            "spool_backlog": self._recorder.backlog if self._recorder else None,
        }
        advancing = True
        if self._recorder is not None:
            progress = self._recorder.progress()
            storage = self.config.storage
            limit_s = storage.stall_after_flushes * storage.flush_interval_ms / 1000.0
            stalled = progress.oldest_waiting_s > limit_s or progress.consecutive_failures >= _STALL_FAILURES
            advancing = not stalled
            checks["ledger_oldest_wait_s"] = round(progress.oldest_waiting_s, 3)
            checks["ledger_write_failures"] = progress.consecutive_failures
            if stalled:
                checks["reason"] = (
                    f"the ledger is not advancing: {progress.backlog} records waiting, the oldest for "
                    f"{progress.oldest_waiting_s:.1f} s (limit {limit_s:g} s), "
                    f"{progress.consecutive_failures} consecutive write failures"
                    + (f", last error: {progress.last_error}" if progress.last_error else "")
                )
        if self.compute is not None:  # reported, not gating: a missing GPU must not stop the serving
            checks["compute_collectors"] = [s.to_json_dict() for s in self.compute.statuses]
        if not ledger:
            checks.setdefault(
                "reason", f"the ledger database has not answered a ping within {self.readiness.stale_after_s:g} s"
            )
        return ledger and advancing and bool(self.routes.names()), checks


def _client_session() -> aiohttp.ClientSession:
    """The upstream HTTP client, made on first use (upstream/lazy_session.py): unbounded pool, bodies
    relayed as sent (no decompression), no User-Agent added."""
    return cast("aiohttp.ClientSession", LazySession())
