"""Where a response goes: the client side of the exchange, as two ASGI send events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]


class ClientChannel:
    """Sends the response start and body chunks to the client over ASGI."""

    __slots__ = ("_send", "sent_bytes", "started")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.sent_bytes = 0

    async def start(self, status: int, headers: Headers) -> None:
        self.started = True
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def body(self, data: bytes, more: bool) -> None:
        self.sent_bytes += len(data)
        await self._send({"type": "http.response.body", "body": data, "more_body": more})

    async def whole(self, status: int, headers: Headers, body: bytes) -> None:
        headers.append((b"content-length", str(len(body)).encode()))
        await self.start(status, headers)
        await self.body(body, False)
