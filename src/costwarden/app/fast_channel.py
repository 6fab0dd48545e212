"""The client side of an exchange on the fast engine: HTTP/1.1 response bytes straight to the socket.

A response with a Content-Length goes out as it is; one without (a stream) goes chunked. `body`
waits while the socket's write buffer is over its high-water mark (the client reads slowly), so
a stream is relayed no faster than the client takes it: nothing is buffered without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from http import HTTPStatus
from typing import Protocol

Headers = list[tuple[bytes, bytes]]
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_NO_BODY = frozenset({204, 304})
_OURS = frozenset({b"connection", b"keep-alive", b"transfer-encoding"})  # framing is the server's to say


class Flow:
    """Write-side flow control of one connection: paused by the transport, awaited by `drain`."""

    __slots__ = ("_waiter", "closed", "paused")

    def __init__(self) -> None:
        self.paused = False
        self.closed = False
        self._waiter: asyncio.Future[None] | None = None

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def lost(self) -> None:
        self.closed = True
        self.resume()

    async def drain(self) -> None:
        if self.paused and not self.closed:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter


def head_bytes(status: int, headers: Headers, keep_alive: bool, chunked: bool) -> bytes:
    """The status line and headers of a response (the server's own framing headers added)."""
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))]
    for name, value in headers:
        if name not in _OURS:
            parts.append(name + b": " + value + b"\r\n")
    if chunked:
        parts.append(b"transfer-encoding: chunked\r\n")
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def wants_close(headers: Headers) -> bool:
    return any(k == b"connection" and v.lower() == b"close" for k, v in headers)


class Answering(Protocol):
    """What a response needs to know of its request."""

    method: str
    keep_alive: bool  # the client's wish (HTTP/1.0, Connection: close)
    complete: bool  # the whole request was read: the connection can carry another


class FastChannel:
    """One response on one connection. `done(keep_alive)` is called once its last byte is written."""

    __slots__ = ("_chunked", "_done", "_flow", "_head_only", "_request", "_transport", "finished", "keep_alive",
                 "sent_bytes", "started")  # fmt: skip

    def __init__(
        self, transport: asyncio.WriteTransport, flow: Flow, request: Answering, done: Callable[[bool], None]
    ) -> None:
        self._transport = transport
        self._flow = flow
        self._request = request
        self._done = done
        self._chunked = False
        self._head_only = request.method == "HEAD"
        self.keep_alive = request.keep_alive
        self.started = False
        self.finished = False  # the last byte is written
        self.sent_bytes = 0

    def _head(self, status: int, headers: Headers, chunked: bool) -> bytes:
        self.started = True
        if wants_close(headers) or not self._request.complete:
            self.keep_alive = False
        self._chunked = chunked
        return head_bytes(status, headers, self.keep_alive, chunked)

    async def start(self, status: int, headers: Headers) -> None:
        sized = any(k == b"content-length" for k, _ in headers)
        self._transport.write(self._head(status, headers, not sized and status not in _NO_BODY))

    async def body(self, data: bytes, more: bool) -> None:
        self.sent_bytes += len(data)
        if self._chunked:
            out = b"%x\r\n%b\r\n" % (len(data), data) if data else b""
            if not more:
                out += b"0\r\n\r\n"
        else:
            out = data
        if out and not self._head_only:
            self._transport.write(out)
        if not more:
            self.finished = True
            self._done(self.keep_alive)
        else:
            await self._flow.drain()

    async def whole(self, status: int, headers: Headers, body: bytes) -> None:
        self.write_whole(status, headers, body)

    def write_whole(self, status: int, headers: Headers, body: bytes) -> None:
        """`whole` without awaiting: a sized response never waits on the socket."""
        headers.append((b"content-length", b"%d" % len(body)))
        self.sent_bytes += len(body)
        self._transport.write(self._head(status, headers, False) + (b"" if self._head_only else body))
        self.finished = True
        self._done(self.keep_alive)
