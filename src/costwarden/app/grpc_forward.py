"""The forward step for V2 over gRPC: relay the call's bytes to the deployment's gRPC upstream.

Like the HTTP forwarder it awaits `settle` once the outcome is known and before the reply leaves.
An upstream's refusal (INVALID_ARGUMENT, NOT_FOUND, ...) is the client's answer, recorded as
rejected; an upstream that cannot be reached or fails is a fault (UNAVAILABLE), recorded as failed.
"""

from __future__ import annotations

import time

import grpc

from costwarden.chain.exchange import Exchange
from costwarden.chain.stage import Channel, Settle
from costwarden.protocols import v2
from costwarden.protocols.errors import GatewayError
from costwarden.protocols.v2_grpc import SERVICE, with_model

# The HTTP status each gRPC code stands for in the ledger (and back: see app/grpc_server.py).
HTTP_OF = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNKNOWN: 502,
    grpc.StatusCode.INTERNAL: 502,
    grpc.StatusCode.DATA_LOSS: 502,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
_NEVER_UPSTREAM = frozenset({"authorization", "x-api-key", "api-key", "cookie", "x-costwarden-request-id"})
_MESSAGE_LIMIT = 500


class GrpcForwarder:
    """Holds one channel per upstream address, made on first use, closed by `close`."""

    def __init__(self, max_message_bytes: int) -> None:
        self._options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", -1),  # the upstream's answer: as large as it is
        ]
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    async def forward(self, exchange: Exchange, channel: Channel, settle: Settle) -> None:
        route = exchange.route
        assert route is not None, "route runs before forward"
        deployment = route.deployment
        if deployment.grpc_upstream is None:
            missing = GatewayError(
                501, "grpc_upstream_missing", f"the deployment {deployment.name!r} has no `grpc_upstream`"
            )
            await _refuse(exchange, channel, settle, missing)
            return
        method = _method(exchange)
        body = exchange.upstream_body
        if route.upstream_model != exchange.model and exchange.endpoint != "/v2":
            body = with_model(method, body, route.upstream_model)
        upstream = self._channel(deployment.grpc_upstream)
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = upstream.unary_unary(method)
        started = time.perf_counter()
        try:
            reply: bytes = await call(
                body, metadata=_metadata(exchange, deployment.api_key), timeout=deployment.timeouts.read
            )
        except grpc.aio.AioRpcError as exc:
            exchange.upstream_seconds = time.perf_counter() - started
            exchange.upstream_status = HTTP_OF.get(exc.code(), 502)
            await _refuse(exchange, channel, settle, _upstream_error(exc, deployment.name))
            return
        exchange.upstream_seconds = time.perf_counter() - started
        exchange.status = exchange.upstream_status = 200
        exchange.response_bytes = len(reply)
        await settle(exchange)
        await channel.whole(200, [], reply)

    def _channel(self, target: str) -> grpc.aio.Channel:
        channel = self._channels.get(target)
        if channel is None:
            channel = self._channels[target] = grpc.aio.insecure_channel(target, options=self._options)
        return channel


def _method(exchange: Exchange) -> str:
    if exchange.endpoint == "/v2":
        return f"/{SERVICE}/ServerMetadata"
    path = v2.parse_path(exchange.path)
    assert path is not None, "route parsed the path"
    name = {"infer": "ModelInfer", "ready": "ModelReady", "metadata": "ModelMetadata"}[path.action]
    return f"/{SERVICE}/{name}"


def _metadata(exchange: Exchange, api_key: str | None) -> list[tuple[str, str | bytes]]:
    """The client's metadata less its credentials; its request id kept, the gateway's beside it."""
    out: list[tuple[str, str | bytes]] = []
    for key, value in exchange.headers:
        name = key.decode("latin-1")
        if name not in _NEVER_UPSTREAM and not name.startswith(("grpc-", ":")) and name not in ("te", "content-type"):
            out.append((name, value if name.endswith("-bin") else value.decode("latin-1")))
    if exchange.header(b"x-request-id") is None:
        out.append(("x-request-id", exchange.request_id))
    out.append(("x-costwarden-request-id", exchange.request_id))
    if api_key:
        out.append(("authorization", f"Bearer {api_key}"))
    return out


def _upstream_error(exc: grpc.aio.AioRpcError, deployment: str) -> GatewayError:
    code = exc.code()
    status = HTTP_OF.get(code, 502)
    if status >= 500 and status != 501:
        # The upstream's own words stay in the gateway: they may name internal addresses.
        kind = "upstream_timeout" if status == 504 else "upstream_unavailable"
        return GatewayError(
            504 if status == 504 else 502, kind, f"the upstream of {deployment!r} failed ({code.name})",
            kind="upstream_error",
        )
    details = (exc.details() or "")[:_MESSAGE_LIMIT]
    return GatewayError(status, f"upstream_{code.name.lower()}", details or f"rejected by the upstream ({code.name})")


async def _refuse(exchange: Exchange, channel: Channel, settle: Settle, error: GatewayError) -> None:
    exchange.reject(error)  # an upstream's refusal: rejected; its failure: failed
    await settle(exchange)
    await channel.whole(error.status, [], b"")
