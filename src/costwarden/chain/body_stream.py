"""The rest of a request body after its head, relayed upstream as it arrives (bounded memory).

The gateway reads a streamed upload's head itself (app/body.py); the rest is pulled from the
client only as fast as the upstream takes it (the HTTP client awaits each write), so at most a
few chunks are in memory whatever the body's size. The body limit is a running count, and the
body deadline still holds. A problem on the way (over the limit, too slow, the client gone, a
body cut short) is kept in `error` and raised, which aborts the upstream request: the upstream
never sees a complete body, and the gateway answers and records `error`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from costwarden.protocols.errors import GatewayError

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Check = Callable[[bytes, bool], GatewayError | None]  # (chunk, last) -> a problem with the body


class BodyStream:
    """One request body's rest: read at most once, by `rest`."""

    def __init__(self, receive: Receive, received: int, max_bytes: int, deadline: float, timeout: float) -> None:
        self._receive = receive
        self.received = received  # bytes of the body read so far, the head's included
        self._max_bytes = max_bytes
        self._deadline = deadline  # the loop's clock: the body must end by then
        self._timeout = timeout
        self.started = False
        self.done = False  # the client sent the body's last byte
        self.error: GatewayError | None = None

    async def rest(self, check: Check) -> AsyncIterator[bytes]:
        """The rest of the body chunk by chunk; `check` sees each chunk before it is relayed."""
        assert not self.started, "a body is relayed once"
        self.started = True
        while not self.done:
            try:
                async with asyncio.timeout_at(self._deadline):
                    message = await self._receive()
            except TimeoutError:
                raise self._fail(
                    GatewayError(408, "body_timeout", f"the request body did not arrive within {self._timeout:g} s")
                ) from None
            if message["type"] == "http.disconnect":
                raise self._fail(
                    GatewayError(
                        499, "incomplete_body", f"the client went away after {self.received} bytes of the request body"
                    )
                )
            chunk: bytes = message.get("body", b"")
            self.done = not message.get("more_body", False)
            self.received += len(chunk)
            if self.received > self._max_bytes:
                raise self._fail(
                    GatewayError(
                        413, "request_too_large", f"the request body is over the limit of {self._max_bytes} bytes"
                    )
                )
            problem = check(chunk, self.done)
            if problem is not None:
                raise self._fail(problem)
            if chunk:
                yield chunk

    def _fail(self, error: GatewayError) -> GatewayError:
        self.error = error
        return error
