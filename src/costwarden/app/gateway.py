"""The gateway's ASGI app: reads the request, picks the protocol, runs the chain.

Plain ASGI on the hot path (no framework routing): inference paths go to the chain, a few
gateway paths are answered here, everything else (admin API, docs) goes to the admin app.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from costwarden.chain.exchange import Exchange
from costwarden.chain.order import Chain
from costwarden.domain.record import Protocol
from costwarden.protocols import openai
from costwarden.protocols.errors import GatewayError
from costwarden.protocols.render import error_payload
from costwarden.upstream.channel import ClientChannel

log = logging.getLogger(__name__)
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
LocalHandler = Callable[[Scope, Send], Awaitable[None]]

_OPENAI_POST = frozenset(openai.ENDPOINTS)
_JSON = (b"content-type", b"application/json")


def classify(method: str, path: str) -> tuple[Protocol, str] | None:
    """(protocol, endpoint) of an inference path, or None if the chain does not handle it."""
    if path.startswith("/v1/"):
        if path in _OPENAI_POST:
            return Protocol.OPENAI, path
        if path == "/v1/models":
            return Protocol.OPENAI, path
        return None
    if path.startswith("/v2/models/"):
        return Protocol.V2, "/v2/infer" if path.endswith("/infer") else "/v2/models"
    if path.startswith("/proxy/"):
        return Protocol.HTTP, "/proxy"
    return None


class GatewayApp:
    """Dispatches inference requests to the chain; `local` maps exact paths to own handlers."""

    def __init__(self, chain: Chain, max_body_bytes: int, local: dict[str, LocalHandler], fallback: ASGIApp) -> None:
        self._chain = chain
        self._max_body = max_body_bytes
        self._local = local
        self._fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._fallback(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        kind = classify(method, path)
        if kind is None:
            handler = self._local.get(path)
            if handler is not None:
                await handler(scope, send)
            else:
                await self._fallback(scope, receive, send)
            return
        protocol, endpoint = kind
        exchange = Exchange(
            request_id=os.urandom(16).hex(),  # uuid4's randomness without building a UUID object
            method=method,
            path=path,
            query=scope.get("query_string", b""),
            headers=scope["headers"],
            body=b"",
            protocol=protocol,
            endpoint=endpoint,
        )
        channel = ClientChannel(send)
        try:
            body, too_large = await self._read_body(scope, receive)
            exchange.body = body
            if too_large:
                await self._refuse(
                    exchange,
                    channel,
                    GatewayError(
                        413, "request_too_large", f"the request body is over the limit of {self._max_body} bytes"
                    ),
                )
                return
            if protocol is Protocol.OPENAI and method != ("GET" if endpoint == "/v1/models" else "POST"):
                allowed = "GET" if endpoint == "/v1/models" else "POST"
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

    async def _read_body(self, scope: Scope, receive: Receive) -> tuple[bytes, bool]:
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    if int(value) > self._max_body:
                        return b"", True
                except ValueError:
                    pass
                break
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                return b"", True
            chunks.append(chunk)
            more = message.get("more_body", False)
        return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), False

    async def _refuse(self, exchange: Exchange, channel: ClientChannel, error: GatewayError) -> None:
        """A request refused before the chain: still settled, so it still has its ledger record."""
        exchange.reject(error)
        await self._chain.settle(exchange)
        headers = [_JSON, *exchange.costwarden_headers(True)]
        await channel.whole(error.status, headers, error_payload(exchange.protocol, error))
