"""`server.engine: fast`: the inference port on the fast engine, the rest on the ASGI app.

The inference paths (`/v1/...`, `/v2/...`, `/proxy/...`) and the gateway's own health and
metrics paths are served on `server.port` by `fast_http` and go through the same `GatewayApp.serve`
and the same chain as on the asgi engine: the same limits, records and costs. The admin API,
dashboard, `/docs` and the Batch API are the ASGI app's: on `server.port` too, handed to it
in-process (`fast_bridge`), or, when `server.admin_port` is set, only there, served by uvicorn in
the same process and event loop. uvicorn's lifespan starts the runtime either way (with no
admin port it listens on nothing).
"""

from __future__ import annotations

import logging
import math
import socket
from typing import Any

import uvicorn

from costwarden.app.asgi import CostwardenASGI
from costwarden.app.fast_bridge import Receive, Send, asgi_scope
from costwarden.app.fast_channel import FastChannel
from costwarden.app.fast_http import FastServer, Limits, Request
from costwarden.app.gateway import GatewayApp, classify, prefix_protocol, unserved
from costwarden.app.http_guard import guarded_protocol
from costwarden.app.local import Probe, probe_answers
from costwarden.app.worker_metrics import WorkerSlot
from costwarden.config.models import Config
from costwarden.protocols.errors import GatewayError
from costwarden.protocols.render import error_payload
from costwarden.protocols.request_limits import head_problem
from costwarden.protocols.request_path import route_path

log = logging.getLogger(__name__)
_JSON = (b"content-type", b"application/json")
_CLOSE = (b"connection", b"close")
GRACE_SECONDS = 30.0


class FastGateway:
    """The fast engine's handler: a parsed request to `GatewayApp.serve` (no copy of its logic)."""

    def __init__(self, gateway: GatewayApp, admin_port: int | None, probes: dict[str, Probe] | None = None) -> None:
        self._gateway = gateway
        self._admin_port = admin_port
        self._probes = probes or {}

    def instant(self, request: Request) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        """A health probe's answer, given without a task (`fast_http.Instant`); None for any other path."""
        probe = self._probes.get(request.path)
        if probe is None or head_problem(request.path, request.query, request.headers, self._gateway.header_limits):
            return None  # not a probe, or a head over the limits: refused as on any path
        status, body = probe()
        return status, [_JSON], body

    async def __call__(self, request: Request, channel: FastChannel) -> None:
        path = route_path(request.path)  # the asgi engine's reading of it (protocols/request_path.py)
        kind = classify(request.method, path)
        if kind is None:
            await self._other(request, path, channel)
            return
        protocol, endpoint = kind
        exchange = self._gateway.new_exchange(
            request.method, path, request.query, request.headers, protocol, endpoint, request.path
        )
        await self._gateway.serve(exchange, channel, request.receive, request.whole())

    async def _other(self, request: Request, path: str, channel: FastChannel) -> None:
        """Not an inference path: the gateway's own (health, metrics), the ASGI app's (admin API,
        dashboard, Batch API) when there is no admin port, or a recorded 404."""
        shape = prefix_protocol(path)
        problem = head_problem(request.path, request.query, request.headers, self._gateway.header_limits)
        if problem is not None:
            await channel.whole(problem.status, [_JSON, _CLOSE], error_payload(shape, problem))
            return
        handler = self._gateway.local.get(path)
        if handler is not None:
            scope = {"type": "http", "method": request.method, "path": path,
                     "query_string": request.query, "headers": request.headers}  # fmt: skip
            await handler(scope, Send(channel))
            return
        refusal = unserved(request.method, path)
        if self._admin_port is None and (refusal is None or self._gateway.is_batch(path)):
            await self._gateway(asgi_scope(request), Receive(request), Send(channel, request))
            return
        if refusal is None:
            where = f"no endpoint at {request.method} {path[:200]}"
        else:
            shape, missing = refusal
            where = missing.message
        if self._admin_port is not None:
            where += f" on the inference port; the admin API, dashboard and Batch API are on port {self._admin_port}"
        refused = GatewayError(404, "not_found", where)
        if refusal is None:
            await channel.whole(404, [_JSON], error_payload(shape, refused))
            return
        query, headers = request.query, request.headers
        exchange = self._gateway.new_exchange(request.method, path, query, headers, shape, "unknown", request.path)
        await self._gateway.refuse(exchange, channel, refused, close=not request.complete)


class BothServer(uvicorn.Server):
    """uvicorn serving the ASGI app on the admin port (or on no port: its lifespan only), plus the
    fast engine on the inference port: the fast engine starts once the lifespan has started the
    runtime, and stops before it."""

    def __init__(
        self, config: uvicorn.Config, app: CostwardenASGI, host: str, port: int, sock: socket.socket | None = None
    ) -> None:
        super().__init__(config)
        self._app = app
        self._host, self._port = host, port
        self._sock = sock  # the inference socket a master bound (server.workers > 1), else None
        self.fast: FastServer | None = None

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.should_exit:
            return
        server = self._app.runtime.config.server
        limits = Limits(
            server.header_timeout_seconds,
            4 * server.max_header_bytes,
            server.keepalive_timeout_seconds,
            server.keepalive_max_requests,
        )
        handler = FastGateway(self._app.gateway, server.admin_port, probe_answers(self._app.runtime))
        self.fast = FastServer(handler, limits, handler.instant)
        try:
            await self.fast.start(self._host, self._port, self._sock)
        except OSError as exc:
            log.error("the fast engine cannot listen on %s:%s: %s", self._host, self._port, exc)
            self.fast = None
            self.should_exit = True

    async def shutdown(self, sockets: Any = None) -> None:
        if self.fast is not None:
            await self.fast.stop(GRACE_SECONDS)
        await super().shutdown(sockets)


def uvicorn_config(app: CostwardenASGI, cfg: Config, host: str, port: int, log_level: str) -> uvicorn.Config:
    """uvicorn's config for the gateway's ASGI app: the whole gateway on engine: asgi, the admin port
    on engine: fast (with no admin port, it is given no socket to serve)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        # httptools plus a header deadline and a cap on buffered header bytes (see app/http_guard.py)
        http=guarded_protocol(cfg.server.header_timeout_seconds, 4 * cfg.server.max_header_bytes),
        lifespan="on",
        log_level=log_level,
        access_log=False,
        server_header=False,
        proxy_headers=False,  # the gateway reads no forwarded-for headers; saves a middleware hop
        date_header=False,
        timeout_keep_alive=math.ceil(cfg.server.keepalive_timeout_seconds),  # uvicorn takes whole seconds
        timeout_graceful_shutdown=int(GRACE_SECONDS),
    )


def admin_config(app: CostwardenASGI, cfg: Config, host: str, log_level: str) -> uvicorn.Config:
    return uvicorn_config(app, cfg, host, cfg.server.admin_port or 0, log_level)


def run(cfg: Config, host: str, port: int, log_level: str) -> None:
    """Serve until a signal stops the process (what `costwarden serve` does with engine: fast)."""
    app = CostwardenASGI(cfg, freeze_heap=True)
    BothServer(admin_config(app, cfg, host, log_level), app, host, port).run(None if cfg.server.admin_port else [])


def run_worker(
    cfg: Config, log_level: str, worker: WorkerSlot, sock: socket.socket, admin: socket.socket | None
) -> None:
    """One of `server.workers` processes: serve the sockets its master bound, until a signal."""
    app = CostwardenASGI(cfg, worker, freeze_heap=True)
    server = BothServer(admin_config(app, cfg, cfg.server.host, log_level), app, cfg.server.host, 0, sock)
    server.run([] if admin is None else [admin])
