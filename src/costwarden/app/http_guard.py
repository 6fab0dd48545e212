"""The HTTP/1.1 connection protocol of `serve`: uvicorn's httptools protocol plus two guards that
uvicorn lacks (measured on uvicorn 0.54: a 50 MB header was buffered whole, and a connection that
never finished its headers was held forever).

- a header deadline: from a connection's first byte (or its opening) to the end of the headers;
- a cap on header bytes buffered before the headers end, so a flood cannot grow the process.

It also mends one uvicorn behaviour: bytes that are not HTTP after a complete request on a
keep-alive connection got uvicorn's 400 at once, and the connection closed before the complete
request's own answer (which the gateway still forwarded and billed). That 400 now waits its turn.

Both answer a JSON 408/431 and close the connection; there is no ledger record because no request
was ever formed (the gateway's own 431 with a record, in `GatewayApp`, covers headers that end
within the cap but are over the configured limits).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from costwarden.domain.record import Protocol
from costwarden.protocols.errors import GatewayError
from costwarden.protocols.render import error_payload

LINGER_SECONDS = 2.0


def guarded_protocol(header_timeout: float, header_cap: int) -> type[asyncio.Protocol]:
    """The protocol class to give uvicorn as `http=`, with these limits (seconds, bytes).

    `header_cap` is how many bytes of unfinished headers one request may buffer; set it above
    the gateway's own header limit so that headers just over that limit still get a record.
    """

    class Guarded(GuardedHttpTools):
        HEADER_TIMEOUT = header_timeout
        HEADER_CAP = header_cap

    return Guarded


class GuardedHttpTools(HttpToolsProtocol):
    HEADER_TIMEOUT = 10.0
    HEADER_CAP = 256 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_started = False
        self._lingering = False
        self._refusal: str | None = None  # a 400 owed once the earlier requests are answered

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering or self._refusal is not None:
            return  # answered and closing, or refused: what the client still sends is dropped unread
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            # Counted after parsing, so only bytes of unfinished headers count (never a body's).
            self._head_bytes += len(data)
            if self._head_bytes > self.HEADER_CAP:
                if self._busy():
                    self.flow.pause_reading()  # uvicorn resumes it once the response is sent
                    return
                self._answer(
                    GatewayError(
                        431, "headers_too_large", f"the request headers exceed {self.HEADER_CAP} bytes; refused"
                    )
                )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        if not self._head_started:
            self._head_started = True  # the connection's first request: its deadline runs from the opening
        else:
            self._arm()  # keep-alive or pipelined: each request gets its own deadline

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes that are not HTTP: after the answers to the complete requests before them."""
        self._disarm()
        self._in_head = False
        cycle = self.cycle
        if cycle is not None and not cycle.more_body and not cycle.response_complete:
            self._refusal = msg
            return
        super().send_400_response(msg)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._refusal is not None and not self.transport.is_closing() and not self._busy() and not self.pipeline:
            msg, self._refusal = self._refusal, None
            self._lingering = True  # nothing more is read from this connection
            super().send_400_response(msg)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.HEADER_TIMEOUT, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if not self._head_started:
            self.transport.close()  # nothing was ever sent: nothing to answer
            return
        if self._busy():
            self._arm()
            return
        self._answer(
            GatewayError(408, "header_timeout", f"the request headers did not arrive within {self.HEADER_TIMEOUT:g} s")
        )

    def _busy(self) -> bool:
        """An earlier (pipelined) request's response is still being sent: nothing may come between."""
        return self.cycle is not None and not self.cycle.response_complete

    def _answer(self, error: GatewayError) -> None:
        self._disarm()
        self._in_head = False
        body = error_payload(Protocol.OPENAI, error)
        head = (
            f"HTTP/1.1 {error.status} {'Request Timeout' if error.status == 408 else 'Request Header Fields Too Large'}"
            f"\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        # A lingering close (as nginx does): a client still sending would otherwise get a reset that
        # can overtake the answer. Its bytes are dropped for a short while, then the socket closes.
        self._lingering = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self._close)

    def _close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()
