"""The composition root: build every part from config, start and stop them in order."""

from __future__ import annotations

import logging
import time

import aiohttp
from prometheus_client import CollectorRegistry

from costwarden.chain.attribute import Attribute
from costwarden.chain.authenticate import Authenticate
from costwarden.chain.meter import Meter
from costwarden.chain.order import Chain
from costwarden.chain.record import Record
from costwarden.chain.route import RouteStage, RouteTable
from costwarden.config.models import Config
from costwarden.observability.metrics import GatewayMetrics, Observe
from costwarden.ports import Store
from costwarden.services.keyring import KeyRing
from costwarden.services.keys import config_key
from costwarden.storage.factory import open_store
from costwarden.storage.recorder import Recorder
from costwarden.storage.spool import Spool
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
        self.keyring = KeyRing(self.store, [config_key(k) for k in config.keys], config.storage.key_refresh_seconds)
        self.started_at = time.time()
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
        self._chain = Chain(
            before=[
                Authenticate(self.keyring),
                Attribute(),
                RouteStage(self.routes, int(self.started_at)),
                Observe(self.metrics),
            ],
            forwarder=Forwarder(self._session),
            after=[Meter(), Record(self._recorder)],
        )
        self._recorder.start()
        self.keyring.start()

    async def stop(self) -> None:
        await self.keyring.stop()
        if self._recorder is not None:
            await self._recorder.stop()
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
