"""The gateway's ASGI app: reads the request, picks the protocol, runs the chain.

Plain ASGI on the hot path (no framework routing): inference paths go to the chain, a few
gateway paths are answered here, everything else (admin API, docs) goes to the admin app.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from costwarden.app.body import BodyReader, decoded
from costwarden.app.request_ids import process_ids
from costwarden.chain.exchange import Exchange
from costwarden.chain.order import Chain
from costwarden.chain.stage import Channel
from costwarden.domain.record import Protocol
from costwarden.protocols import audio, openai, responses, v2
from costwarden.protocols.errors import GatewayError
from costwarden.protocols.render import error_payload
from costwarden.protocols.request_limits import HeaderLimits, head_problem
from costwarden.protocols.request_path import has_dot_segment, route_path
from costwarden.upstream.channel import ClientChannel

log = logging.getLogger(__name__)
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
LocalHandler = Callable[[Scope, Send], Awaitable[None]]

_OPENAI_POST = frozenset(openai.ENDPOINTS)
_OPENAI_GET = frozenset(("/v1/models", responses.RETRIEVE))  # every other OpenAI endpoint takes POST
_JSON = (b"content-type", b"application/json")
_CLOSE = (b"connection", b"close")  # the rest of the request is unread: do not reuse the connection


def classify(method: str, path: str) -> tuple[Protocol, str] | None:
    """(protocol, endpoint) of an inference path (decoded: `route_path`), or None if the chain does
    not handle it. A `.` or `..` segment is none: a proxy tail must not climb out of its upstream."""
    if "/." in path and has_dot_segment(path):  # the test inline: most paths have none
        return None
    if path.startswith("/v1/"):
        if path in _OPENAI_POST:
            return Protocol.OPENAI, path
        if path == "/v1/models" or path.startswith("/v1/models/"):
            return Protocol.OPENAI, "/v1/models"
        if responses.retrieve_id(path) is not None:
            return Protocol.OPENAI, responses.RETRIEVE
        return None
    if path in ("/v2", "/v2/"):
        return Protocol.V2, "/v2"  # server metadata
    if path.startswith("/v2/models/"):
        parsed = v2.parse_path(path)  # the route stage's reading of it: one rule for both
        return Protocol.V2, "/v2/infer" if parsed is not None and parsed.action == "infer" else "/v2/models"
    if path.startswith("/proxy/"):
        return Protocol.HTTP, "/proxy"
    return None


def unserved(method: str, path: str) -> tuple[Protocol, GatewayError] | None:
    """The recorded 404 of a path that `classify` does not take but that lies under an inference
    prefix, in that protocol's shape: a `/v1` or `/v2` path no endpoint serves, a `/proxy/` path with
    a `.` or `..` segment (no route: it could climb out of its upstream's base path). None: not the
    chain's to answer (the gateway's own paths, the admin app's)."""
    where = f"no endpoint at {method} {path[:200]}"
    if path.startswith("/proxy/"):
        return Protocol.HTTP, GatewayError(404, "not_found", f"{where}: a /proxy/ path has no `.` or `..` segment")
    shape = prefix_protocol(path)
    return None if shape is Protocol.HTTP else (shape, GatewayError(404, "not_found", where))


def scope_raw_path(scope: Scope) -> str | None:
    """The path of an ASGI scope as the client sent it (`raw_path`, without a query some clients
    leave in it), or None when the server gave none."""
    raw: bytes | None = scope.get("raw_path")
    return None if raw is None else raw.partition(b"?")[0].decode("latin-1")


def prefix_protocol(path: str) -> Protocol:
    """Whose error shape a path gets when no endpoint serves it: OpenAI's under /v1, V2's under /v2."""
    if path == "/v1" or path.startswith("/v1/"):
        return Protocol.OPENAI
    if path == "/v2" or path.startswith("/v2/"):
        return Protocol.V2
    return Protocol.HTTP


def _upload_plan(exchange: Exchange) -> Callable[[bytes], str] | None:
    """An audio upload is streamed upstream once its head is read (protocols/audio.py); a
    compressed one is read whole (it is decoded to be metered)."""
    if exchange.endpoint not in audio.UPLOADS or exchange.method != "POST":
        return None
    if exchange.header(b"content-encoding") is not None:
        return None
    try:
        mark = audio.boundary(exchange.header(b"content-type"))
    except GatewayError:
        return None  # refused by the route stage, from the whole body
    return lambda head: audio.head_plan(head, mark)


class GatewayApp:
    """Dispatches inference requests to the chain; `local` maps exact paths to own handlers."""

    def __init__(
        self,
        chain: Chain,
        body: BodyReader,
        header_limits: HeaderLimits,
        local: dict[str, LocalHandler],
        fallback: ASGIApp,
        batch: tuple[tuple[str, ...], ASGIApp] | None = None,
    ) -> None:
        self._batch = batch  # (path prefixes, app): the Batch API's routes
        self._chain = chain
        self._body = body
        self._header_limits = header_limits
        self._local = local
        self.body, self.header_limits, self.local = body, header_limits, local  # for the fast engine
        self._fallback = fallback
        self._ids = process_ids()  # per process: the gateway is built once in each, a fork redraws them

    def new_exchange(
        self,
        method: str,
        path: str,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        protocol: Protocol,
        endpoint: str,
        raw_path: str = "",
    ) -> Exchange:
        """A request's exchange, with its id: time-ordered (index locality), made without a syscall.
        `path` decoded (`route_path`), `raw_path` as sent when they differ."""
        return Exchange(
            request_id=self._ids.next(time.time_ns() // 1_000_000),
            method=method,
            path=path,
            raw_path=raw_path if raw_path != path else "",
            query=query,
            headers=headers,
            body=b"",
            protocol=protocol,
            endpoint=endpoint,
        )

    def is_batch(self, path: str) -> bool:
        """Whether the Batch API serves this path (when batches are enabled)."""
        return self._batch is not None and path.startswith(self._batch[0])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._fallback(scope, receive, send)
            return
        raw = scope_raw_path(scope)
        path: str = scope["path"] if raw is None else route_path(raw)
        scope["path"] = path  # the admin app and the Batch API route on the same reading as the chain
        method: str = scope["method"]
        kind = classify(method, path)
        if kind is None:
            sent = path if raw is None else raw
            problem = head_problem(sent, scope.get("query_string", b""), scope["headers"], self._header_limits)
            if problem is None and self._batch is not None and self.is_batch(path):
                await self._batch[1](scope, receive, send)
                return
            handler = self._local.get(path)
            shape = prefix_protocol(path)
            refusal = unserved(method, path) if problem is None and handler is None else None
            if refusal is not None:
                # Not the admin app's to answer: an OpenAI or V2 client parses only its own shape,
                # and the refusal is recorded like any other.
                shape, refused = refusal
                query = scope.get("query_string", b"")
                exchange = self.new_exchange(method, path, query, scope["headers"], shape, "unknown", raw or "")
                await self._refuse(exchange, ClientChannel(send), refused, close=True)
                return
            if problem is not None:
                body = error_payload(shape, problem)
                await ClientChannel(send).whole(problem.status, [_JSON, _CLOSE], body)
            elif handler is not None:
                await handler(scope, send)
            else:
                await self._to_fallback(scope, receive, send)
            return
        protocol, endpoint = kind
        query = scope.get("query_string", b"")
        exchange = self.new_exchange(method, path, query, scope["headers"], protocol, endpoint, raw or "")
        await self.serve(exchange, ClientChannel(send), receive)

    async def serve(self, exchange: Exchange, channel: Channel, receive: Receive, whole: bytes | None = None) -> None:
        """An inference request through the chain, whichever server engine received it.

        `receive` gives the request body as ASGI `http.request` events (the fast engine adapts its own);
        the body reader bounds it (413, 408, 499, 503) and may leave an upload's rest to stream.
        `whole`: the body, when the server has it all already (no reading, no deadline: only the limit)."""
        protocol, endpoint, method = exchange.protocol, exchange.endpoint, exchange.method
        try:
            problem = head_problem(exchange.sent_path, exchange.query, exchange.headers, self._header_limits)
            if problem is not None:
                await self._refuse(exchange, channel, problem, close=True)
                return
            try:
                if whole is None:
                    plan = _upload_plan(exchange)
                    exchange.body, exchange.body_stream = await self._body.read_head(exchange.headers, receive, plan)
                elif len(whole) > self._body.max_bytes:
                    raise self._body.too_large()
                else:
                    exchange.body = whole
            except GatewayError as refused:
                await self._refuse(exchange, channel, refused, close=True)
                return
            encoding = exchange.header(b"content-encoding")
            if encoding is not None and protocol is not Protocol.HTTP:
                try:
                    self._decode(exchange, encoding)
                except GatewayError as refused:
                    await self._refuse(exchange, channel, refused)
                    return
            allowed = "GET" if endpoint in _OPENAI_GET else "POST"
            if protocol is Protocol.OPENAI and method != allowed:
                error = GatewayError(405, "method_not_allowed", f"use {allowed} {endpoint}")
                await self._refuse(exchange, channel, error)
                return
            await self._chain.run(exchange, channel)
        except Exception:
            log.exception("unexpected error on request %s", exchange.request_id)
            if not channel.started:
                error = GatewayError(
                    500, "internal_error", "the gateway failed unexpectedly; this is a bug", kind="server_error"
                )
                await channel.whole(500, [_JSON, *exchange.costwarden_headers(False)], error_payload(protocol, error))

    def _decode(self, exchange: Exchange, encoding: bytes) -> None:
        """Undo a compressed body's coding for metering: a V2 body still goes upstream as sent; an
        OpenAI body is rewritten by the route stage anyway, so it goes decoded (and unlabelled)."""
        plain = decoded(encoding, exchange.body, self._body.max_bytes)
        if exchange.protocol is Protocol.OPENAI:
            exchange.body = plain
        else:
            exchange.metered_body = plain

    async def _to_fallback(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The admin API gets its body read under the same deadline and bounds as inference."""
        try:
            body = await self._body.read(scope["headers"], receive)
        except GatewayError as error:
            payload = error_payload(Protocol.HTTP, error)
            await ClientChannel(send).whole(error.status, [_JSON, *error.headers, _CLOSE], payload)
            return
        sent = False

        async def replay() -> MutableMapping[str, Any]:
            nonlocal sent
            if sent:
                return await receive()  # after the body, only a disconnect can come
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self._fallback(scope, replay, send)

    async def refuse(self, exchange: Exchange, channel: Channel, error: GatewayError, close: bool = False) -> None:
        """A request refused before the chain (another engine's too): settled and recorded."""
        await self._chain.refuse(exchange, channel, error, close)

    async def _refuse(self, exchange: Exchange, channel: Channel, error: GatewayError, close: bool = False) -> None:
        """A request refused before the chain: still settled, so it still has its ledger record.

        `close` when the request was not read whole: the connection cannot carry another request.
        """
        await self._chain.refuse(exchange, channel, error, close)
