"""Reading a request body from the client: a size limit, a deadline, and a bound on slow clients.

A body is complete only when the client says so (`more_body` false). A disconnect before that is
an incomplete body (499), never the end of one: nothing the client did not finish is forwarded.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from costwarden.aio import cancel_and_wait
from costwarden.chain.body_stream import BodyStream
from costwarden.protocols.errors import GatewayError

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Plan = Callable[[bytes], str]  # a body's head -> "stream", "more" or "whole" (protocols/audio.py)

# When every slow-body slot is taken, a new request still gets this long to deliver its whole
# body: a client whose body is already on the wire is not refused because others are slow.
GRACE_SECONDS = 1.0
# Deadlines are enforced by one sweep this often, not a timer per request: a body that is already
# here (nearly every request) costs a dict entry, not a timer (measured: 1.2 -> 22 us with one).
SWEEP_SECONDS = 0.1


class BodyReader:
    """Reads whole bodies; at most `max_slow` requests wait for body bytes at once.

    A request whose body has already arrived reads it without suspending, so it holds a slot for
    no time at all; the slots bound the clients that keep the gateway waiting. `start` (in the
    running loop) begins the sweep that enforces deadlines; `stop` ends it.
    """

    def __init__(self, max_bytes: int, timeout_seconds: float, max_slow: int) -> None:
        self.max_bytes = max_bytes
        self._timeout = timeout_seconds
        self._grace = min(GRACE_SECONDS, timeout_seconds)
        self._max_slow = max_slow
        self.reading = 0  # requests inside `read` now, holding a slot
        self._deadlines: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def stop(self) -> None:
        if self._sweeper is not None:
            await cancel_and_wait(self._sweeper)
            self._sweeper = None

    def too_large(self) -> GatewayError:
        return GatewayError(413, "request_too_large", f"the request body is over the limit of {self.max_bytes} bytes")

    async def read(self, headers: list[tuple[bytes, bytes]], receive: Receive) -> bytes:
        """The whole body; raises GatewayError 413, 408, 499 or 503 (the body was not read whole)."""
        body, _ = await self.read_head(headers, receive, None)
        return body

    async def read_head(
        self, headers: list[tuple[bytes, bytes]], receive: Receive, plan: Plan | None
    ) -> tuple[bytes, BodyStream | None]:
        """The whole body and None; or, once `plan` says "stream" of what has come ("whole": read
        it all), the head and the stream of the rest, under the same limit and deadline."""
        declared = _content_length(headers)
        if declared is not None and declared > self.max_bytes:
            raise self.too_large()
        task = asyncio.current_task()
        assert task is not None, "read runs in a task"
        full = self.reading >= self._max_slow
        if not full:
            self.reading += 1
        self._deadlines[task] = asyncio.get_running_loop().time() + (self._grace if full else self._timeout)
        deadline = self._deadlines[task]
        try:
            body, complete = await self._collect(receive, declared, plan)
            if complete:
                return body, None
            return body, BodyStream(receive, len(body), self.max_bytes, deadline, self._timeout)
        except asyncio.CancelledError:
            if task not in self._expired:
                raise
            task.uncancel()
            raise self._late(full) from None
        finally:
            del self._deadlines[task]
            self._expired.discard(task)
            if not full:
                self.reading -= 1

    def _late(self, full: bool) -> GatewayError:
        if full:
            return GatewayError(
                503,
                "too_many_slow_clients",
                "too many clients are sending their request bodies slowly; retry shortly",
                kind="server_error",
                headers=((b"retry-after", b"1"),),
            )
        return GatewayError(408, "body_timeout", f"the request body did not arrive within {self._timeout:g} s")

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            now = loop.time()
            for task, deadline in list(self._deadlines.items()):
                if deadline <= now and task not in self._expired:
                    self._expired.add(task)
                    task.cancel()

    async def _collect(self, receive: Receive, declared: int | None, plan: Plan | None) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                expected = f"of {declared} " if declared is not None else ""
                raise GatewayError(
                    499,
                    "incomplete_body",
                    f"the client went away after {size} {expected}bytes of the request body",
                )
            chunk: bytes = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > self.max_bytes:
                    raise self.too_large()
                chunks.append(chunk)
            if not message.get("more_body", False):
                return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), True
            if plan is not None and chunk:
                if len(chunks) > 1:
                    chunks[:] = [b"".join(chunks)]
                decided = plan(chunks[0])
                if decided == "stream":
                    return chunks[0], False
                if decided == "whole":
                    plan = None


# Content codings the gateway decodes to meter a body (RFC 9110 8.4.1); `identity` is a no-op.
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_CODINGS = {b"gzip": _GZIP_WBITS, b"x-gzip": _GZIP_WBITS, b"deflate": zlib.MAX_WBITS}
_MAX_CODINGS = 2  # "gzip, gzip" is legal; a longer chain is only ever a way to multiply work


def decoded(encoding: bytes, body: bytes, max_bytes: int) -> bytes:
    """The body with its `Content-Encoding` undone, at most `max_bytes` once decoded.

    Raises GatewayError 413 past the limit (a zip bomb stops there: memory stays bounded), 400 for
    a stream that is corrupt or cut short, 415 for a coding the gateway does not decode.
    """
    codings = [c.strip().lower() for c in encoding.split(b",") if c.strip()]
    codings = [c for c in codings if c != b"identity"]
    if len(codings) > _MAX_CODINGS or any(c not in _CODINGS for c in codings):
        shown = encoding[:100].decode("latin-1")
        raise GatewayError(
            415, "unsupported_encoding", f"Content-Encoding {shown!r} is not one of gzip, deflate (at most twice)"
        )
    for coding in reversed(codings):  # the last coding listed was applied last
        body = _inflate(body, _CODINGS[coding], coding == b"deflate", max_bytes)
    return body


def _inflate(data: bytes, wbits: int, deflate: bool, max_bytes: int) -> bytes:
    if deflate and data[:1] and (data[0] & 0x0F) != 8:  # not zlib-wrapped: a raw deflate stream
        wbits = -zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise GatewayError(400, "invalid_encoding", f"the request body is not valid {_name(wbits)}: {exc}") from exc
    if len(out) > max_bytes:
        raise GatewayError(
            413, "request_too_large", f"the request body is over the limit of {max_bytes} bytes once decompressed"
        )
    if not inflater.eof:
        raise GatewayError(400, "invalid_encoding", f"the request body is a truncated {_name(wbits)} stream")
    if inflater.unused_data:  # bytes after the stream's end: what the gateway meters must be all of it
        raise GatewayError(400, "invalid_encoding", f"the request body has data after its {_name(wbits)} stream")
    return out


def _name(wbits: int) -> str:
    return "gzip" if wbits == _GZIP_WBITS else "deflate"


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for key, value in headers:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP server has already refused a malformed length
    return None
