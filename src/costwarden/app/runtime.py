"""The composition root: build every part from config, start and stop them in order."""

from __future__ import annotations

import logging
import time

import aiohttp
from prometheus_client import CollectorRegistry

from costwarden.alerts.dispatcher import AlertDispatcher
from costwarden.alerts.factory import build_dispatcher
from costwarden.chain.admit import Admit, StoreHealth
from costwarden.chain.attribute import Attribute
from costwarden.chain.authenticate import Authenticate
from costwarden.chain.meter import Meter
from costwarden.chain.order import Chain
from costwarden.chain.policy import policy_from_config
from costwarden.chain.record import Record
from costwarden.chain.route import RouteStage, RouteTable
from costwarden.config.models import Config
from costwarden.domain.alert import Alert
from costwarden.domain.spike import SpikeDetector
from costwarden.observability.governance import GovernanceCollector
from costwarden.observability.metrics import GatewayMetrics, Observe
from costwarden.observability.upstreams import UpstreamCollector
from costwarden.ports import CounterStore, CounterStoreUnavailable, Store
from costwarden.services.budgets import active_budgets
from costwarden.services.governor import Governor
from costwarden.services.keyring import KeyRing
from costwarden.services.keys import config_key
from costwarden.services.spikes import SpikeWatch
from costwarden.storage.factory import open_counters, open_lease, open_store
from costwarden.storage.recorder import Recorder
from costwarden.storage.spool import Spool
from costwarden.upstream.balancer import Balancer
from costwarden.upstream.forwarder import Forwarder

log = logging.getLogger(__name__)


class Runtime:
    """Everything one gateway process owns. Built unstarted; `start` / `stop` bracket its life."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store: Store = open_store(config.storage.ledger)
        self.registry = CollectorRegistry()
        self.metrics = GatewayMetrics(self.registry)
        self.routes = RouteTable(config.deployments)
        self.balancer = Balancer(self.routes)
        self.registry.register(UpstreamCollector(self.balancer))
        self.keyring = KeyRing(self.store, [config_key(k) for k in config.keys], config.storage.key_refresh_seconds)
        self.started_at = time.time()
        self.health = StoreHealth()
        self.counters: CounterStore = open_counters(config.state)
        self.policy = policy_from_config(config)
        self.lease = open_lease(config.state, ttl_s=max(15.0, 3 * config.governance.evaluate_every_seconds))
        self._admit: Admit | None = None
        self._governor: Governor | None = None
        self._alerts: AlertDispatcher | None = None
        self._session: aiohttp.ClientSession | None = None
        self._spool: Spool | None = None
        self._recorder: Recorder | None = None
        self._chain: Chain | None = None

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
        self._spool = Spool(storage.spool_dir)
        self._recorder = Recorder(self.store, self._spool, storage.flush_interval_ms / 1000.0, storage.batch_size)
        replayed = await self._recorder.recover()
        if replayed:
            log.warning("recovered %d ledger records from the spool of a gateway that stopped abruptly", replayed)
        await self.keyring.refresh()
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=60)
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
        )
        self._alerts = build_dispatcher(self.config.alerts, self._session, self.store)
        active = await self.store.list_alerts(True, 1000)
        self._alerts.adopt(active)
        self._alerts.start()
        self._admit = Admit(self.policy, self.counters, self.health)
        self._governor = self._build_governor(active)
        await self._governor.refresh_budgets()
        self.registry.register(
            GovernanceCollector(
                lambda: self.governor.views,
                self.health,
                lambda: self._admit.slot_usage if self._admit else {},
                self._alert_counts,
            )
        )
        try:
            await self._governor.rebuild(time.time())
        except CounterStoreUnavailable:
            log.error("the counter store is unreachable at start: budgets apply their fail mode until it is back")
        self._chain = Chain(
            before=[
                Authenticate(self.keyring),
                Attribute(),
                RouteStage(self.routes, int(self.started_at)),
                self._admit,
                Observe(self.metrics),
            ],
            forwarder=Forwarder(self._session, self.balancer),
            after=[Meter(), Record(self._recorder)],
        )
        self._recorder.start()
        self.keyring.start()
        self._governor.start()

    def _build_governor(self, active: list[Alert]) -> Governor:
        gov = self.config.governance
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
            lag = 2 * self.config.storage.flush_interval_ms / 1000.0 + 0.5
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
            rebuild_lag=2 * self.config.storage.flush_interval_ms / 1000.0 + 0.5,
        )

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
        if self._governor is not None:
            await self._governor.stop()
        await self.keyring.stop()
        if self._recorder is not None:
            await self._recorder.stop()
        if self._admit is not None:
            await self._admit.drain()
        if self._alerts is not None:
            await self._alerts.stop(grace_s=10)
        await self.counters.close()
        await self.lease.close()
        if self._session is not None:
            await self._session.close()
        await self.store.close()

    async def ready(self) -> tuple[bool, dict[str, object]]:
        ledger = await self.store.ping()
        checks: dict[str, object] = {
            "ledger": ledger,
            "deployments": len(self.routes.names()),
            "spool_backlog": self._recorder.backlog if self._recorder else None,
        }
        return ledger and bool(self.routes.names()), checks
