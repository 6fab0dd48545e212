"""Assemble the ASGI application of one gateway process from its config."""

from __future__ import annotations

import gc
import logging
import sys

from costwarden.app.admin import build_admin
from costwarden.app.batch_api import PREFIXES, BatchApi, batch_body_reader
from costwarden.app.body import BodyReader
from costwarden.app.gateway import GatewayApp, Receive, Scope, Send
from costwarden.app.local import local_handlers
from costwarden.app.runtime import Runtime
from costwarden.app.worker_metrics import WorkerExposition, WorkerSlot
from costwarden.config.models import Config, ServerConfig
from costwarden.protocols.request_limits import HeaderLimits

log = logging.getLogger(__name__)
# How long a thread may hold the GIL while another waits (CPython's default: 5 ms). Reports,
# the /metrics render, key decoding and folds run in worker threads; each step of a request on
# the event loop may wait this long for the GIL, several times per request. At 1 ms a probe
# during a month's report answered in 6-9 ms at p99 instead of 28-59 (docs/benchmarks.md).
GIL_SWITCH_INTERVAL_S = 0.001


class CostwardenASGI:
    """The gateway app plus the ASGI lifespan that starts and stops the runtime."""

    def __init__(self, config: Config, worker: WorkerSlot | None = None, freeze_heap: bool = False) -> None:
        """`freeze_heap`: the serving process (`costwarden serve`) moves what it built at start out of
        the collector's sight; never in a process that starts gateways over and over (tests), where
        the frozen garbage of each would be kept for good."""
        self.runtime = Runtime(config)
        self._freeze_heap = freeze_heap
        self._worker = worker  # one of `server.workers` processes (app/supervisor.py), or None
        self._worker_metrics: WorkerExposition | None = None
        admin = build_admin(self.runtime)
        self._gateway: GatewayApp | None = None
        self._body: BodyReader | None = None
        self._grpc: GrpcListener | None = None
        self._batch_api: BatchApi | None = None
        self._admin = admin

    @property
    def gateway(self) -> GatewayApp:
        """The started gateway (the fast engine serves its inference paths through it)."""
        if self._gateway is None:
            raise RuntimeError("the gateway is not started")
        return self._gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if self._gateway is None:
            raise RuntimeError("the gateway received a request before its lifespan started")
        await self._gateway(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)  # the gateway's process: see above
                    await self.runtime.start()
                    server = self.runtime.config.server
                    self._body = body_reader(server)
                    self._body.start()
                    self._batch_api = batch_api(self.runtime, self._body)
                    if self._worker is not None:
                        self._worker_metrics = WorkerExposition(self.runtime.registry, self._worker)
                        await self._worker_metrics.start()
                    self._gateway = GatewayApp(
                        self.runtime.chain,
                        self._body,
                        header_limits(server),
                        local_handlers(self.runtime, self._worker_metrics),
                        self._admin,
                        (PREFIXES, self._batch_api) if self._batch_api is not None else None,
                    )
                    if server.grpc_port is not None:
                        self._grpc = GrpcListener(self.runtime)
                        await self._grpc.start(server.host, server.grpc_port)
                except Exception as exc:
                    log.exception("the gateway could not start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                # Everything built so far (modules, config, routes, metrics) lives as long as the
                # process: out of the collector's sight, a full collection no longer walks it (one
                # took 20-200 ms on the gateway's heap, a stall of every request in flight).
                if self._freeze_heap:
                    gc.freeze()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._grpc is not None:
                    await self._grpc.stop()
                if self._worker_metrics is not None:
                    await self._worker_metrics.stop()
                if self._body is not None:
                    await self._body.stop()
                if self._batch_api is not None:
                    await self._batch_api.uploads.stop()
                await self.runtime.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


class GrpcListener:
    """The V2 gRPC port, when configured; grpcio (the `grpc` extra) is imported only then."""

    def __init__(self, runtime: Runtime) -> None:
        try:
            from costwarden.app.grpc_forward import GrpcForwarder
            from costwarden.app.grpc_server import GrpcGateway
        except ImportError as exc:
            raise RuntimeError(
                f"server.grpc_port needs the 'grpcio' and 'protobuf' packages ({exc}): pip install 'costwarden[grpc]'"
            ) from exc

        limit = runtime.config.server.max_body_bytes
        self._forwarder = GrpcForwarder(limit)
        self._gateway = GrpcGateway(runtime.chain_for(self._forwarder), limit, self._ready)
        self._runtime = runtime

    async def _ready(self) -> bool:
        ok, _ = self._runtime.ready()
        return ok

    async def start(self, host: str, port: int) -> None:
        await self._gateway.start(host, port)

    async def stop(self) -> None:
        await self._gateway.stop(grace_seconds=10)
        await self._forwarder.close()


def body_reader(server: ServerConfig) -> BodyReader:
    return BodyReader(server.max_body_bytes, server.body_timeout_seconds, server.max_slow_bodies)


def header_limits(server: ServerConfig) -> HeaderLimits:
    return HeaderLimits(
        server.max_header_bytes, server.max_headers, server.max_header_value_bytes, server.max_target_bytes
    )


def batch_api(runtime: Runtime, requests: BodyReader) -> BatchApi | None:
    """The Batch API when batches are enabled, with its own (larger) body limit, started."""
    if runtime.batch_service is None:
        return None
    config, server = runtime.config.batch, runtime.config.server
    reader = batch_body_reader(config.max_file_bytes, max(server.body_timeout_seconds, 300.0), server.max_slow_bodies)
    reader.start()
    return BatchApi(runtime.batch_service, runtime.keyring, reader, requests)
