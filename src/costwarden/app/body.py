"""Reading a request body from the client: a size limit, a deadline, and a bound on slow clients.

A body is complete only when the client says so (`more_body` false). A disconnect before that is
an incomplete body (499), never the end of one: nothing the client did not finish is forwarded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from costwarden.protocols.errors import GatewayError

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

# When every slow-body slot is taken, a new request still gets this long to deliver its whole
# body: a client whose body is already on the wire is not refused because others are slow.
GRACE_SECONDS = 1.0


class BodyReader:
    """Reads whole bodies; at most `max_slow` requests wait for body bytes at once.

    A request whose body has already arrived reads it without suspending, so it holds a slot for
    no time at all; the slots bound the clients that keep the gateway waiting.
    """

    def __init__(self, max_bytes: int, timeout_seconds: float, max_slow: int) -> None:
        self.max_bytes = max_bytes
        self._timeout = timeout_seconds
        self._grace = min(GRACE_SECONDS, timeout_seconds)
        self._max_slow = max_slow
        self.reading = 0  # requests inside `read` now

    def too_large(self) -> GatewayError:
        return GatewayError(413, "request_too_large", f"the request body is over the limit of {self.max_bytes} bytes")

    async def read(self, headers: list[tuple[bytes, bytes]], receive: Receive) -> bytes:
        """The whole body; raises GatewayError 413, 408, 499 or 503 (the body was not read whole)."""
        declared = _content_length(headers)
        if declared is not None and declared > self.max_bytes:
            raise self.too_large()
        full = self.reading >= self._max_slow
        if not full:
            self.reading += 1
        try:
            async with asyncio.timeout(self._grace if full else self._timeout):
                return await self._collect(receive, declared)
        except TimeoutError:
            if full:
                raise GatewayError(
                    503,
                    "too_many_slow_clients",
                    "too many clients are sending their request bodies slowly; retry shortly",
                    kind="server_error",
                    headers=((b"retry-after", b"1"),),
                ) from None
            raise GatewayError(
                408, "body_timeout", f"the request body did not arrive within {self._timeout:g} s"
            ) from None
        finally:
            if not full:
                self.reading -= 1

    async def _collect(self, receive: Receive, declared: int | None) -> bytes:
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
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for key, value in headers:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP server has already refused a malformed length
    return None
