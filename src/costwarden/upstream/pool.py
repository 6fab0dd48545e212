"""A keep-alive HTTP/1.1 client on asyncio protocols + httptools, for http:// and https:// upstreams.

Used by the forwarder on the fast engine (`server.engine: fast`) in place of aiohttp; https goes
through the standard library's `ssl` with the deployment's context (upstream/tls.py: certificate and
hostname verified, SNI sent), and a failed handshake is `NotSent`, as aiohttp's. It offers the part of aiohttp's request
API the forwarder reads (`status`, `content_type`, `raw_headers`, `headers.get`, `read()`,
`content.iter_any()`), so the forwarder's logic stays one. Connections are reused while both ends
keep them alive and for at most `max_idle_seconds` of idleness (a middlebox may drop an idle
connection without a word, and a request written on it would then wait out the read timeout); one
that fails, or whose response was not read whole, is closed, never reused. A reused connection
that the upstream closed before any byte of its answer (it timed the connection out as the request
went) is retried once on a new connection for idempotent methods, as aiohttp does; a POST is not
(the upstream may have acted on it), so the idle cap is what keeps that race rare.

Errors: `NotSent` when no connection could be made (nothing left the gateway: the balancer may try
another upstream), `Broken` when the upstream broke off or sent what is not HTTP, `TimeoutError`
past the read timeout (between two reads, as aiohttp's `sock_read`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from ssl import SSLContext, create_default_context
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

BUFFER = 256 * 1024  # response bytes held for the reader before the upstream socket pauses
IDLE_SECONDS = 30.0  # a pooled connection idle longer is closed, not reused
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})  # aiohttp's retry set
MAX_TARGETS = 1024  # split URLs kept (see UpstreamPool.target)


class NotSent(OSError):
    """No connection to the upstream: none of the request was sent."""


class Broken(OSError):
    """The upstream closed the connection, or sent bytes that are not HTTP/1.1, mid-answer."""


class _Headers(Mapping[str, str]):
    """The response headers by case-insensitive name (the first of repeated ones)."""

    __slots__ = ("_raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw = raw

    def __getitem__(self, name: str) -> str:
        key = name.lower().encode("latin-1")
        for k, v in self._raw:
            if k.lower() == key:
                return v.decode("latin-1")
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(k.decode("latin-1") for k, _ in self._raw)

    def __len__(self) -> int:
        return len(self._raw)


class Response:
    """One upstream response, read as it arrives."""

    def __init__(self, conn: _Conn, read_timeout: float) -> None:
        self._conn = conn
        self._timeout = read_timeout
        self._loop = conn.loop if conn.loop is not None else asyncio.get_running_loop()
        self._raw: list[tuple[bytes, bytes]] = []
        self._chunks: list[bytes] = []
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None  # the read timer: one per response, not one per wait
        self._since = 0.0  # loop time the current wait began
        self.status = 0
        self.has_head = False
        self.complete = False
        self.error: BaseException | None = None
        self.headers = _Headers(self._raw)
        self.content = self

    @property
    def raw_headers(self) -> tuple[tuple[bytes, bytes], ...]:
        return tuple(self._raw)

    @property
    def content_type(self) -> str:
        value = self.headers.get("content-type") or "application/octet-stream"
        return value.partition(";")[0].strip().lower()

    # --- fed by the connection --------------------------------------------------------------

    def header(self, name: bytes, value: bytes) -> None:
        self._raw.append((name, value))

    def head(self, status: int) -> None:
        self.status, self.has_head = status, True
        self._wake()

    def body(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size > BUFFER:
            self._conn.pause()
        self._wake()

    def done(self) -> None:
        self.complete = True
        self._stop_timer()
        self._wake()

    def fail(self, error: BaseException) -> None:
        if not self.complete and self.error is None:
            self.error = error
            self._stop_timer()
            self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- read by the forwarder --------------------------------------------------------------

    async def wait(self) -> None:
        """Until something new arrives; TimeoutError after the read timeout with nothing.

        The timer is armed by the first wait and re-armed only when it fires while a wait still
        has time left (a stream's chunks each end a wait: arming and cancelling a timer per chunk
        cost ~3 us of a chunk's relay); it is stopped when the answer ends or a wait is cut short."""
        if self.error is not None:
            raise self.error
        waiter = self._waiter = self._loop.create_future()
        self._since = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_at(self._since + self._timeout, self._check)
        try:
            await waiter
        except BaseException:  # cancelled (the client left, the server stops) or timed out
            self._stop_timer()
            raise
        if self.error is not None:
            raise self.error

    def _check(self) -> None:
        """The read timer fired: the current wait times out, or the timer waits for what it has left."""
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # nothing waits now: the next wait arms it again
        deadline = self._since + self._timeout
        if self._loop.time() < deadline - 0.001:  # a loop's clock may be a millisecond coarse (uvloop)
            self._timer = self._loop.call_at(deadline, self._check)
        else:
            _expire(waiter)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _take(self) -> bytes:
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks, self._size = [], 0
        self._conn.resume()
        return data

    async def read(self) -> bytes:
        parts: list[bytes] = []
        while True:
            if self._chunks:
                parts.append(self._take())
            if self.complete:
                return b"".join(parts)
            await self.wait()

    async def iter_any(self) -> AsyncIterator[bytes]:
        while True:
            if self._chunks:
                yield self._take()
            elif self.complete:
                return
            else:
                await self.wait()


Where = tuple[str, int, SSLContext | None]  # an upstream: host, port, TLS context (None: plain http)


def _system_context() -> SSLContext:
    return create_default_context()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("the upstream sent nothing within the read timeout"))


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.response: Response | None = None
        self.reusable = False
        self.idle_since = 0.0  # monotonic time it went back to the pool
        self.answered = False  # a byte of the current answer arrived
        self._head = False  # the request was HEAD: its answer has no body, whatever its headers say
        self._parser = httptools.HttpResponseParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.loop = asyncio.get_running_loop()  # once a connection: in 3.11 each call is a getpid() system call

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        if self.response is not None:
            self.response.fail(Broken(f"the upstream closed the connection ({exc or 'EOF'})"))

    def eof_received(self) -> bool:
        response = self.response
        if (
            response is not None
            and response.has_head
            and not response.complete
            and response.headers.get("content-length") is None
            and response.headers.get("transfer-encoding") is None
        ):
            response.done()  # a body delimited by the connection's close: this is its end
        return False

    def data_received(self, data: bytes) -> None:
        self.answered = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.reusable = False
            if self.response is not None:
                self.response.fail(Broken(f"the upstream's answer is not HTTP/1.1: {exc}"))
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.response is not None:
            self.response.header(name, value)

    def on_headers_complete(self) -> None:
        response = self.response
        if response is not None:
            response.head(self._parser.get_status_code())
            if self._head:  # llhttp cannot be told to skip the body: the answer ends here
                self.reusable = self._parser.should_keep_alive()
                response.done()

    def on_body(self, body: bytes) -> None:
        if self.response is not None and not self._head:
            self.response.body(body)

    def on_message_complete(self) -> None:
        if self._head:
            return
        self.reusable = self._parser.should_keep_alive()
        if self.response is not None:
            self.response.done()

    def send(self, data: bytes, response: Response, head: bool = False) -> None:
        assert self.transport is not None
        self.response, self.reusable, self._head, self.answered = response, False, head, False
        self._parser = httptools.HttpResponseParser(self)
        self.transport.write(data)

    def pause(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def alive(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class UpstreamPool:
    """Idle keep-alive connections per (host, port, TLS context); `request` as aiohttp's session has it."""

    def __init__(self, max_idle: int = 64, max_idle_seconds: float = IDLE_SECONDS) -> None:
        self._idle: dict[Where, list[_Conn]] = {}
        self._max_idle = max_idle
        self._max_idle_seconds = max_idle_seconds
        self._default_tls: SSLContext | None = None  # the system's CAs, built on the first https
        # A deployment's few URLs (its upstream + each endpoint's path) are split once, not per request.
        self._targets: dict[tuple[str, SSLContext | bool], tuple[Where, str, str]] = {}

    def handles(self, url: str) -> bool:
        return url.startswith(("http://", "https://"))

    def request(
        self,
        method: str,
        url: str,
        *,
        data: bytes | None,
        headers: Mapping[str, str],
        timeout: Any,
        ssl: SSLContext | bool = True,
        **_: Any,
    ) -> _Exchange:
        return _Exchange(self, method, url, data or b"", headers, timeout.sock_connect, timeout.sock_read, ssl)

    def target(self, url: str, tls: SSLContext | bool = True) -> tuple[Where, str, str]:
        """((host, port, TLS context or None), path+query, Host header) of an http:// or https:// URL."""
        found = self._targets.get((url, tls))
        if found is None:
            if len(self._targets) >= MAX_TARGETS:  # passthrough paths and queries vary without bound
                self._targets.clear()
            found = self._targets[url, tls] = self._split(url, tls)
        return found

    def _split(self, url: str, tls: SSLContext | bool) -> tuple[Where, str, str]:
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        default = 443 if secure else 80
        host, port = parts.hostname or "", parts.port or default
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        context: SSLContext | None = None
        if secure:
            if isinstance(tls, SSLContext):
                context = tls
            else:
                context = self._default_tls = self._default_tls or _system_context()
        return (host, port, context), path, host_header(host, port, default)

    def idle_conn(self, where: Where) -> _Conn | None:
        """A pooled connection still open and idle for less than the cap, or None."""
        idle = self._idle.get(where)
        oldest = time.monotonic() - self._max_idle_seconds
        while idle:
            conn = idle.pop()
            if conn.alive() and conn.idle_since >= oldest:
                return conn
            conn.close()
        return None

    async def connect(self, where: Where, connect_timeout: float) -> _Conn:
        host, port, context = where
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_timeout):  # the TLS handshake included
                _, conn = await loop.create_connection(
                    _Conn, host, port, ssl=context, server_hostname=host if context is not None else None
                )
        except (OSError, TimeoutError) as exc:  # SSLError (a certificate refused) is an OSError
            raise NotSent(f"cannot connect to {host}:{port}: {exc!r}") from exc
        return conn

    def release(self, where: Where, conn: _Conn) -> None:
        conn.response = None
        idle = self._idle.setdefault(where, [])
        if conn.reusable and conn.alive() and len(idle) < self._max_idle:
            conn.idle_since = time.monotonic()
            idle.append(conn)
        else:
            conn.close()

    async def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


def host_header(host: str, port: int, default: int) -> str:
    """The Host header as other clients write it: an IPv6 literal in brackets, the scheme's default
    port left out."""
    name = f"[{host}]" if ":" in host else host
    return name if port == default else f"{name}:{port}"


class _Exchange:
    """`async with pool.request(...) as response`: the connection goes back to the pool on exit
    only when the response was read whole and both ends keep the connection."""

    def __init__(
        self,
        pool: UpstreamPool,
        method: str,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        connect_timeout: float | None,
        read_timeout: float | None,
        tls: SSLContext | bool = True,
    ) -> None:
        self._pool = pool
        self._tls = tls
        self._method, self._url, self._body, self._headers = method, url, body, headers
        self._connect = connect_timeout or 30.0
        self._read = read_timeout or 300.0
        self._conn: _Conn | None = None
        self._where: Where = ("", 0, None)

    async def __aenter__(self) -> Response:
        where, path, host = self._pool.target(self._url, self._tls)
        self._where = where
        lines = [f"{self._method} {path} HTTP/1.1\r\nhost: {host}\r\n"]
        lines.extend(f"{k}: {v}\r\n" for k, v in self._headers.items())
        if self._body or self._method in ("POST", "PUT", "PATCH"):
            lines.append(f"content-length: {len(self._body)}\r\n")
        lines.append("\r\n")
        data = "".join(lines).encode("latin-1") + self._body
        conn = self._pool.idle_conn(where)
        if conn is not None:
            response = await self._send(conn, data, retry=self._method in IDEMPOTENT)
            if response is not None:
                return response
        response = await self._send(await self._pool.connect(where, self._connect), data, retry=False)
        assert response is not None
        return response

    async def _send(self, conn: _Conn, data: bytes, retry: bool) -> Response | None:
        """The response's head; None when `retry` and the upstream closed the connection before any
        byte of an answer (a stale keep-alive connection: the caller sends again on a new one)."""
        self._conn = conn
        response = Response(conn, self._read)
        conn.send(data, response, head=self._method == "HEAD")
        try:
            while not response.has_head:
                await response.wait()
        except Broken:
            if not retry or conn.answered:
                raise
            conn.reusable = False
            conn.close()
            self._conn = None
            return None
        return response

    async def __aexit__(self, *exc: object) -> None:
        conn = self._conn
        if conn is None:
            return
        if exc[0] is not None or conn.response is None or not conn.response.complete:
            conn.reusable = False
        self._pool.release(self._where, conn)
