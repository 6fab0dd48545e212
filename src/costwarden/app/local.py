"""Paths the gateway answers itself: health, readiness, metrics, and a key holder's own spend."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

import orjson
from prometheus_client import CONTENT_TYPE_LATEST

from costwarden.app.gateway import LocalHandler, Scope, Send
from costwarden.app.runtime import Runtime
from costwarden.app.spend_body import own_spend_body
from costwarden.app.worker_metrics import WorkerExposition
from costwarden.chain.authenticate import presented_key
from costwarden.domain.report import QueryError
from costwarden.observability.exposition import Exposition
from costwarden.protocols import openai
from costwarden.protocols.errors import UNAUTHENTICATED, GatewayError
from costwarden.services.reports import build_query
from costwarden.upstream.channel import ClientChannel

JSON = (b"content-type", b"application/json")
Probe = Callable[[], tuple[int, bytes]]


def probe_answers(runtime: Runtime) -> dict[str, Probe]:
    """The health paths' answers (status, JSON body), from state the process keeps: no I/O and no
    await, so the fast engine answers them in the loop turn that reads them (`fast_http.Instant`)."""

    def readyz() -> tuple[int, bytes]:
        ok, checks = runtime.ready()
        return 200 if ok else 503, orjson.dumps({"ready": ok, **checks})

    def v2_ready() -> tuple[int, bytes]:
        ok, _ = runtime.ready()
        return 200 if ok else 503, orjson.dumps({"ready": ok})

    return {
        "/healthz": lambda: (200, b'{"status":"alive"}'),
        "/readyz": readyz,
        "/v2/health/ready": v2_ready,
        "/v2/health/live": lambda: (200, b'{"live":true}'),
    }


async def _reply(send: Send, status: int, body: bytes, content_type: bytes = b"application/json") -> None:
    await ClientChannel(send).whole(status, [(b"content-type", content_type)], body)


def local_handlers(runtime: Runtime, workers: WorkerExposition | None = None) -> dict[str, LocalHandler]:
    """`workers`: with `server.workers` > 1, /metrics answers for every worker (app/worker_metrics.py)."""
    exposition: Exposition | WorkerExposition = workers or Exposition(runtime.registry)

    async def metrics(scope: Scope, send: Send) -> None:
        await _reply(send, 200, await exposition.render(), CONTENT_TYPE_LATEST.encode())

    async def own_spend(scope: Scope, send: Send) -> None:
        """GET /v1/costwarden/spend: the caller's own team only, whatever it asks for."""
        try:
            token = presented_key(scope["headers"])
            identity = runtime.keyring.resolve(token) if token else None
            if identity is None:
                raise GatewayError(401, "invalid_api_key", "a valid API key is required", kind=UNAUTHENTICATED)
            params = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
            where = [w for w in params.get("where", "").split(",") if w and not w.startswith("team=")]
            asked = {w.partition("=")[2] for w in params.get("where", "").split(",") if w.startswith("team=")}
            if asked - {identity.team}:
                raise GatewayError(
                    403,
                    "team_not_allowed",
                    f"this key belongs to team {identity.team!r} and can see only its spend; "
                    f"drop team={sorted(asked - {identity.team})[0]} from `where`",
                )
            query = build_query(
                params.get("group_by", "project"),
                params.get("since", "30d"),
                None,
                None,
                [*where, f"team={identity.team}"],
                time.time(),
            )
        except GatewayError as error:
            await _reply(send, error.status, openai.error_body(error.message, error.kind, error.code))
            return
        except QueryError as exc:
            await _reply(send, 400, openai.error_body(str(exc), "invalid_request_error", "invalid_query"))
            return
        await _reply(send, 200, await runtime.store.spend_encoded(query, own_spend_body))  # in the report process

    handlers: dict[str, Callable[[Scope, Send], Awaitable[None]]] = {
        path: _probe_handler(probe) for path, probe in probe_answers(runtime).items()
    }
    handlers |= {"/metrics": metrics, "/v1/costwarden/spend": own_spend}
    return handlers


def _probe_handler(probe: Probe) -> LocalHandler:
    async def handler(scope: Scope, send: Send) -> None:
        status, body = probe()
        await _reply(send, status, body)

    return handler
