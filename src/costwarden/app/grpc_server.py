"""The V2 gRPC listener (`server.grpc_port`): KServe's `GRPCInferenceService` beside the HTTP port.

Every call runs the same chain as HTTP (authenticate with metadata `authorization: Bearer cw_...`,
attribute, route, admit, meter, record) with the gRPC forwarder as its last step, and has one
ledger record whatever its outcome; refusals are gRPC status codes. Messages are bytes end to end:
the handler parses only what the chain reads (app/grpc_forward.py, protocols/v2_grpc).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NoReturn

import grpc

from costwarden.app.request_ids import process_ids
from costwarden.chain.exchange import Exchange
from costwarden.chain.order import Chain
from costwarden.chain.stage import Headers
from costwarden.domain.record import Protocol
from costwarden.protocols.errors import GatewayError
from costwarden.protocols.v2_grpc import HEALTH, call_of, health, server_metadata

log = logging.getLogger(__name__)
# The gRPC code of each refusal's HTTP status; budgets and rate limits (429) are RESOURCE_EXHAUSTED.
CODE_OF: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    402: grpc.StatusCode.RESOURCE_EXHAUSTED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    409: grpc.StatusCode.ABORTED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
# Messages past the limit up to this many times it are read and refused by the gateway; larger ones
# grpc itself refuses (RESOURCE_EXHAUSTED) from the length prefix without reading them, so memory
# stays bounded. The handler takes the request as a stream, so it still runs for those: a unary call
# whose one message never arrives was refused by the transport, and is recorded as such.
TRANSPORT_FACTOR = 2


class Reply:
    """The chain's channel for one call: keeps the status and payload the chain answers with."""

    def __init__(self) -> None:
        self.started = False
        self.status = 0
        self.payload = b""

    async def start(self, status: int, headers: Headers) -> None:
        self.status, self.started = status, True

    async def body(self, data: bytes, more: bool) -> None:
        self.payload += data

    async def whole(self, status: int, headers: Headers, body: bytes) -> None:
        self.status, self.payload, self.started = status, body, True


Behavior = Callable[[bytes, grpc.aio.ServicerContext[bytes, bytes]], Awaitable[bytes]]


class GrpcGateway(grpc.GenericRpcHandler):
    """Serves every method path: KServe's through the chain, any other as UNIMPLEMENTED (recorded)."""

    def __init__(self, chain: Chain, max_message_bytes: int, ready: Callable[[], Awaitable[bool]]) -> None:
        self._chain = chain
        self._max = max_message_bytes
        self._ready = ready  # as /v2/health/ready: the ledger reachable and advancing
        self._server: grpc.aio.Server | None = None
        self._ids = process_ids()  # as HTTP's (app/gateway.py): time-ordered, no syscall per call

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes]:
        method: str = handler_call_details.method

        async def behavior(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            return await self.call(method, await _only(requests), context)

        # bytes in, bytes out: no (de)serializer. Request-streaming so that it runs even when grpc
        # refuses the message (over the transport limit): a unary client sends one message all the same.
        return grpc.stream_unary_rpc_method_handler(behavior)

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (0: any free port); returns the port."""
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", TRANSPORT_FACTOR * self._max),
                ("grpc.max_send_message_length", -1),
            ]
        )
        self._server.add_generic_rpc_handlers([self])
        bound = self._server.add_insecure_port(f"{host}:{port}")
        await self._server.start()
        return bound

    async def stop(self, grace_seconds: float) -> None:
        if self._server is not None:
            await self._server.stop(grace_seconds)
            self._server = None

    async def call(
        self, method: str, request: bytes | Exception | None, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> bytes:
        """Serve one call; `request` is its message, None if grpc refused it (over the transport
        limit), an exception if the client sent more than one."""
        if method in HEALTH:
            return health(method, method.endswith("/ServerLive") or await self._ready())
        headers = [(k.encode("latin-1"), v if isinstance(v, bytes) else v.encode("latin-1")) for k, v in
                   context.invocation_metadata() or ()]  # fmt: skip
        exchange = Exchange(
            request_id=self._ids.next(time.time_ns() // 1_000_000),
            method="POST",
            path=method,
            query=b"",
            headers=headers,
            body=request if isinstance(request, bytes) else b"",
            protocol=Protocol.V2,
            endpoint="unknown",  # until the method is known to be one the gateway serves
        )
        reply = Reply()
        try:
            if request is None:
                raise GatewayError(
                    413,
                    "request_too_large",
                    f"the message is over the limit of {self._max} bytes (over {TRANSPORT_FACTOR * self._max}: "
                    "refused unread)",
                )
            if isinstance(request, Exception):
                raise GatewayError(400, "invalid_request", "a unary method takes exactly one message")
            if len(request) > self._max:
                raise GatewayError(413, "request_too_large", f"the message is over the limit of {self._max} bytes")
            call = call_of(method, request)
            if call is None:
                raise GatewayError(501, "unimplemented", f"the gateway does not serve {method[:200]}")
        except GatewayError as refused:
            exchange.reject(refused)
            await self._chain.finish(exchange)
            return await _abort(context, exchange, refused.status, refused.message)
        exchange.method, exchange.path, exchange.endpoint = call.http_method, call.path, call.endpoint
        exchange.metered_body = call.metered
        await self._chain.run(exchange, reply)
        if exchange.error is not None or reply.status >= 400:
            message = exchange.error.message if exchange.error is not None else f"HTTP {reply.status}"
            return await _abort(context, exchange, reply.status or exchange.status, message)
        context.set_trailing_metadata(_trailers(exchange))
        if call.endpoint == "/v2" and exchange.upstream_status is None:  # answered by the gateway itself
            return server_metadata(reply.payload)
        return reply.payload


async def _only(requests: AsyncIterator[bytes]) -> bytes | Exception | None:
    """The one message of a unary call; None when none arrived (grpc refused it: too large)."""
    first: bytes | None = None
    async for message in requests:
        if first is not None:
            return ValueError("more than one message")  # not read on: the call is refused
        first = message
    return first


async def _abort(
    context: grpc.aio.ServicerContext[bytes, bytes], exchange: Exchange, status: int, message: str
) -> NoReturn:
    context.set_trailing_metadata(_trailers(exchange))
    await context.abort(code_of(status), message)


def _trailers(exchange: Exchange) -> tuple[tuple[str, str], ...]:
    """The gateway's response headers (request id, deployment, cost, rate limits) as trailing metadata."""
    return tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in exchange.costwarden_headers(True))


def code_of(status: int) -> grpc.StatusCode:
    return CODE_OF.get(status, grpc.StatusCode.INVALID_ARGUMENT if 400 <= status < 500 else grpc.StatusCode.UNKNOWN)
