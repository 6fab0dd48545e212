"""The fast engine's HTTP/1.1 server side: an asyncio protocol, httptools (llhttp) parsing.

One `Connection` per client socket. Parsing is llhttp's, strict: a malformed request line, a bad
chunk size, duplicate Content-Length, Content-Length with Transfer-Encoding, header folding, NUL
bytes, bare LF all stop the parser; the connection answers 400 (after the answers it still owes)
and closes, so nothing can be smuggled past it. Requests are served one at a time, in order:
pipelined ones wait their turn (reading pauses when too many wait). Each request runs as one task
(`handler(request, channel)`); a client that goes away cancels its task, which the chain records
as 499.

The client edge's limits: a header deadline (from the connection's opening, or from the first byte
of a later request, to the end of its headers: 408), a keep-alive idle timeout of its own (from an
answer's last byte to the next request's first: the connection just closes), a number of requests
per connection (the last one's answer says `connection: close`; what follows it is not parsed), a
cap on header bytes (431; 414 while the request line is still unfinished, or past what the URL
parser takes), and request body bytes buffered here at most `BODY_BUFFER` before reading pauses
until the handler takes them (`Request.receive`, the ASGI-shaped message `BodyReader` reads, so its
size limit, deadline and slow-client slots are the same as the asgi engine's).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, cast

import httptools

from costwarden.app.fast_channel import FastChannel, Flow, head_bytes
from costwarden.app.gateway import prefix_protocol
from costwarden.domain.record import Protocol
from costwarden.protocols.errors import GatewayError
from costwarden.protocols.render import error_payload

log = logging.getLogger(__name__)
BODY_BUFFER = 256 * 1024  # request body bytes held for a handler before reading pauses
MAX_WAITING = 8  # pipelined requests parsed ahead of the one being answered before reading pauses
LINGER_SECONDS = 2.0
URL_PARSER_MAX = 0xFFFF  # httptools.parse_url keeps 16-bit offsets: a longer target cannot be parsed
Message = MutableMapping[str, Any]
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Request:
    """One parsed request: its head, and its body as it arrives."""

    __slots__ = ("_conn", "_waiter", "cancellable", "chunks", "complete", "error", "expect_continue", "headers",
                 "instant", "keep_alive", "lost", "method", "path", "query", "size")  # fmt: skip

    def __init__(self, conn: Connection, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]]):
        self._conn = conn
        self.method, self.path, self.query, self.headers = method, path, query, headers
        self.chunks: list[bytes] = []
        self.size = 0
        self.complete = False
        self.lost = False
        self.keep_alive = True
        self.expect_continue = False
        self.error: GatewayError | None = None  # the body could not be parsed: the request's answer
        self.cancellable = True  # a client leaving cancels the handler (False: it learns from `receive`)
        self.instant = False  # a GET or HEAD with no body: served once whole, maybe by `Instant`
        self._waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def peer(self) -> tuple[Any, Any]:
        """(client address, server address) of the connection, as the transport names them."""
        return self._conn.peer

    async def wait_lost(self) -> None:
        """Until the client has left (an ASGI app listening for `http.disconnect`)."""
        while not self.lost:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter

    def whole(self) -> bytes | None:
        """The whole body, taken, when all of it has arrived and parsed (nearly every request: the
        handler starts after the packet that brought the head is parsed); else None: use `receive`."""
        if not self.complete or self.error is not None:
            return None
        chunks = self.chunks
        if not chunks:
            return b""
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks, self.size = [], 0
        self._conn.body_taken()
        return body

    async def receive(self) -> Message:
        """The body so far, as an ASGI `http.request` message; `http.disconnect` once the client left."""
        while True:
            if self.error is not None:
                raise self.error
            if self.chunks:
                body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
                self.chunks, self.size = [], 0
                self._conn.body_taken()
                return {"type": "http.request", "body": body, "more_body": not self.complete}
            if self.complete:
                return {"type": "http.request", "body": b"", "more_body": False}
            if self.lost:
                return {"type": "http.disconnect"}
            if self.expect_continue:
                self.expect_continue = False
                self._conn.write(_CONTINUE)
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter


Handler = Callable[[Request, FastChannel], Awaitable[None]]
# The answer (status, headers, body) to a whole GET or HEAD with no body, given without a task in
# the loop turn its last byte arrives in; None: the handler's, as any request.
Instant = Callable[[Request], tuple[int, list[tuple[bytes, bytes]], bytes] | None]
_BODY_HEADERS = (b"content-length", b"transfer-encoding")


class Limits:
    """The connection's bounds: seconds to send a head, bytes of a head, seconds idle between two
    requests, requests per connection."""

    __slots__ = ("header_cap", "header_timeout", "idle_timeout", "max_requests")

    def __init__(
        self, header_timeout: float, header_cap: int, idle_timeout: float = 30.0, max_requests: int = 1000
    ) -> None:
        self.header_timeout, self.header_cap = header_timeout, header_cap
        self.idle_timeout, self.max_requests = idle_timeout, max_requests


class Connection(asyncio.Protocol):
    """One client connection (see the module docstring)."""

    def __init__(self, handler: Handler, limits: Limits, live: set[Connection], instant: Instant | None = None) -> None:
        self._handler = handler
        self._instant = instant
        self._limits = limits
        self._live = live
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._flow = Flow()
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0  # bytes received while a head is unfinished
        self._head_parts = 0  # bytes of the url and headers parsed
        self._in_head = False
        self._parsing: Request | None = None  # the request whose bytes are being parsed
        self._waiting: deque[Request] = deque()
        self._current: Request | None = None  # the request being answered
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._refusal: GatewayError | None = None  # owed once the current answer is out
        self._broken = False  # the parser stopped: nothing more is read
        self._eof = False  # the client half-closed: no more requests come
        self._problem: str | None = None  # why a callback stopped the parser
        self._closing = False
        self._paused = False
        self._idle = False  # the timer armed is the keep-alive idle one, not the header deadline
        self._requests = 0  # requests whose head was parsed on this connection
        self.peer: tuple[Any, Any] = (None, None)  # (peername, sockname)

    # --- transport events ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.peer = (transport.get_extra_info("peername"), transport.get_extra_info("sockname"))
        self._live.add(self)
        self._arm(self._limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._live.discard(self)
        self._closing = True
        self._disarm()
        self._flow.lost()
        for request in (self._current, self._parsing, *self._waiting):
            if request is not None:
                request.lost = True
                request.wake()
        self._waiting.clear()
        current = self._current
        if current is not None and current.complete and current.cancellable and self._task and not self._task.done():
            # Being answered: the chain records it (499). A request whose body was still coming
            # learns it from `receive` instead (an incomplete body: 499 too, and nothing forwarded).
            self._task.cancel()

    def eof_received(self) -> bool:
        """The client half-closed: the answers it is owed still go out, then the connection closes.
        A request whose body was still coming never gets the rest (499 from the body reader)."""
        self._eof = True
        request, self._parsing = self._parsing, None
        if request is not None and not request.complete:
            request.lost = True
            request.wake()
        return self._current is not None or bool(self._waiting)  # False: nothing owed, close now

    def pause_writing(self) -> None:
        self._flow.pause()

    def resume_writing(self) -> None:
        self._flow.resume()

    def data_received(self, data: bytes) -> None:
        if self._closing or self._broken:
            return  # answered and closing, or refused: what the client still sends is dropped unread
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The request asking for it is answered as plain HTTP (an Upgrade may be ignored); what
            # follows it would be another protocol: nothing more is read, the connection then closes.
            self._broken = self._eof = True
            self._pause()
            if self._current is None and not self._waiting:
                self._linger()
        except httptools.HttpParserError as exc:
            if self._head_parts > self._limits.header_cap or len(self._url) > URL_PARSER_MAX:
                self._refuse(self._too_large())
                return
            problem = self._problem or str(exc)
            self._refuse(GatewayError(400, "malformed_request", f"the request is not valid HTTP/1.1: {problem}"))
        else:
            if self._in_head:  # unfinished headers: llhttp buffers a header until its end, so count the bytes
                self._head_bytes += len(data)
                if self._head_bytes > self._limits.header_cap:
                    self._refuse(self._too_large())

    def _too_large(self) -> GatewayError:
        if not self._headers or len(self._url) > URL_PARSER_MAX:  # the target is what is too long
            most = min(self._limits.header_cap, URL_PARSER_MAX)
            return GatewayError(414, "uri_too_long", f"the request target is too long (at most {most} bytes are read)")
        return GatewayError(431, "headers_too_large", f"the request headers exceed {self._limits.header_cap} bytes")

    def _count(self, size: int) -> None:
        """The finished parts of a head count too (a head that arrives whole in one read)."""
        self._head_parts += size
        if self._head_parts > self._limits.header_cap:
            raise httptools.HttpParserError("the request headers are too large")

    # --- parser callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url, self._headers, self._in_head, self._head_bytes, self._head_parts = b"", [], True, 0, 0
        if self._idle:  # the first byte of the next request: its header deadline starts now
            self._arm(self._limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))
        self._count(len(name) + len(value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._parser.get_http_version() not in ("1.1", "1.0"):
            self._problem = "only HTTP/1.0 and HTTP/1.1 are served"
            raise httptools.HttpParserError(self._problem)
        if not self._waiting and self._current is None:
            self._disarm()
        self._requests += 1
        if self._requests > self._limits.max_requests:
            return  # pipelined past the last request this connection serves: dropped, it closes after that one
        if len(self._url) > URL_PARSER_MAX:
            raise httptools.HttpParserError("the request target is too long")
        url = httptools.parse_url(self._url)
        path = url.path.decode("latin-1")
        request = Request(self, self._parser.get_method().decode("ascii"), path, url.query or b"", self._headers)
        request.keep_alive = self._parser.should_keep_alive() and self._requests < self._limits.max_requests
        request.expect_continue = any(k == b"expect" and v.lower() == b"100-continue" for k, v in self._headers)
        request.instant = (
            self._instant is not None
            and request.method in ("GET", "HEAD")
            and not any(k in _BODY_HEADERS and v != b"0" for k, v in self._headers)
        )
        self._parsing = request
        self._waiting.append(request)
        if self._current is None:
            if not request.instant:  # a bodiless one is whole in this same parse: served at its end
                self._next()
        elif len(self._waiting) >= MAX_WAITING:
            self._pause()

    def on_body(self, body: bytes) -> None:
        request = self._parsing
        if request is not None:
            request.chunks.append(body)
            request.size += len(body)
            if request.size > BODY_BUFFER:
                self._pause()
            request.wake()

    def on_message_complete(self) -> None:
        request, self._parsing = self._parsing, None
        if request is not None:
            request.complete = True
            request.wake()
            if request.instant and self._current is None and self._waiting and self._waiting[0] is request:
                self._next()
        if self._requests >= self._limits.max_requests:
            self._broken = True  # the last request this connection serves is read: later bytes go unparsed

    # --- serving ------------------------------------------------------------------------

    def _next(self) -> None:
        if not self._waiting:
            self._current = None
            return
        request = self._current = self._waiting.popleft()
        if self._paused and len(self._waiting) < MAX_WAITING:
            self._resume()
        assert self._transport is not None
        channel = FastChannel(self._transport, self._flow, request, self._answered)
        if request.instant and request.complete and self._instant is not None:
            # A probe answered in the loop turn that read it: no task, no second wait for the GIL
            # while worker threads render a scrape or a report (issue 14).
            answer = self._instant(request)
            if answer is not None:
                channel.write_whole(*answer)  # calls `_answered`, which serves the next request
                return
        self._task = self._loop.create_task(self._serve(request, channel))

    async def _serve(self, request: Request, channel: FastChannel) -> None:
        try:
            await self._handler(request, channel)
        except asyncio.CancelledError:
            return
        except Exception:
            log.exception("the fast engine's handler failed on %s %s", request.method, request.path[:200])
        if channel.started and not channel.finished:
            self._abort()  # a response cut short: the client must see it end, not wait for the rest
            return
        if not channel.started and not self._closing:
            error = GatewayError(500, "internal_error", "the gateway failed unexpectedly; this is a bug")
            await channel.whole(500, [(b"content-type", b"application/json"), (b"connection", b"close")],
                                error_payload(Protocol.HTTP, error))  # fmt: skip

    def _answered(self, keep_alive: bool) -> None:
        """The current request's last byte is written: the next one's turn, or close."""
        request = self._current
        if not keep_alive or request is None or not request.complete or self._closing:
            self._linger()
            return
        if self._eof and not self._waiting:
            self.close()
            return
        if self._refusal is not None and not self._waiting:
            self._answer_refusal()
            return
        self._next()
        if self._current is None and self._in_head:  # a pipelined head began meanwhile: its deadline runs from now
            self._arm(self._limits.header_timeout)
        elif self._current is None:
            self._arm(self._limits.idle_timeout, idle=True)

    def body_taken(self) -> None:
        if self._paused and len(self._waiting) < MAX_WAITING:
            self._resume()

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self._closing:
            self._transport.write(data)

    # --- refusals, timers, closing ------------------------------------------------------

    def _refuse(self, error: GatewayError) -> None:
        """Bytes that cannot be parsed: answered after the answers owed before them, then closed.

        When they are a request's body, that request has a head: it gets the refusal as its own
        answer, through the chain (so recorded, in its protocol's shape)."""
        self._broken = True
        self._in_head = False
        self._disarm()
        self._pause()
        request, self._parsing = self._parsing, None
        if request is not None and not request.complete:
            request.error = error
            request.keep_alive = False
            request.wake()
            return
        self._refusal = error
        if self._current is None:
            self._answer_refusal()

    def _answer_refusal(self) -> None:
        error, self._refusal = self._refusal, None
        if error is None or self._transport is None:
            return
        shape = prefix_protocol(self._url[:4].decode("latin-1"))  # the refused request's protocol, when it had a path
        body = error_payload(shape, error)
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        self.write(head_bytes(error.status, headers, False, False) + body)
        self._linger()

    def _linger(self) -> None:
        """Close after what was written (as nginx does: a client still sending gets no reset that
        could overtake the answer; its bytes are dropped for a short while)."""
        if self._closing or self._transport is None:
            return
        self._closing = True
        self._disarm()
        if self._transport.can_write_eof():
            self._transport.write_eof()
        if self._paused:
            self._transport.resume_reading()  # to drop what the client still sends, not to parse it
        self._loop.call_later(LINGER_SECONDS, self.close)

    def _abort(self) -> None:
        self._closing = True
        self._disarm()
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def idle(self) -> bool:
        return self._current is None and not self._in_head

    def _arm(self, seconds: float, idle: bool = False) -> None:
        self._disarm()
        self._idle = idle
        self._timer = self._loop.call_later(seconds, self._timeout)

    def _disarm(self) -> None:
        self._idle = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timeout(self) -> None:
        self._timer = None
        if self._closing or self._current is not None:
            return
        if not self._in_head:
            self.close()  # idle: nothing to answer
            return
        self._refuse(
            GatewayError(
                408, "header_timeout", f"the request headers did not arrive within {self._limits.header_timeout:g} s"
            )
        )

    def _pause(self) -> None:
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def _resume(self) -> None:
        if self._paused and self._transport is not None and not self._closing and not self._broken:
            self._paused = False
            self._transport.resume_reading()


class FastServer:
    """The listening socket of the fast engine and its live connections."""

    def __init__(self, handler: Handler, limits: Limits, instant: Instant | None = None) -> None:
        self._handler = handler
        self._limits = limits
        self._instant = instant
        self._live: set[Connection] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int, sock: socket.socket | None = None) -> None:
        """Listen on host:port, or on `sock` when given (a worker serving a socket its master bound)."""
        loop = asyncio.get_running_loop()
        factory = lambda: Connection(self._handler, self._limits, self._live, self._instant)  # noqa: E731
        if sock is not None:
            self._server = await loop.create_server(factory, sock=sock, backlog=2048)
            return
        self._server = await loop.create_server(factory, host, port, backlog=2048, reuse_address=True)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self, grace_seconds: float) -> None:
        """Stop accepting; close idle connections; give busy ones `grace_seconds` to finish."""
        if self._server is None:
            return
        self._server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        while self._live and loop.time() < deadline:
            for conn in list(self._live):
                if conn.idle():
                    conn.close()
            await asyncio.sleep(0.05)
        for conn in list(self._live):
            conn.close()
        await self._server.wait_closed()
        self._server = None
