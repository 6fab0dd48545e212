"""A TCP relay that times, on its own, the SSE streams passing through it: when each request's first
byte arrived from the client and when each content chunk arrived from the server (same clock as
the test process: time.perf_counter)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import orjson


@dataclass
class Timed:
    """One request/stream: its start and the arrival times of its content chunks."""

    started: float
    tokens: list[float] = field(default_factory=list)
    done: bool = False

    @property
    def ttft(self) -> float:
        return self.tokens[0] - self.started

    @property
    def tpot(self) -> float:
        return (self.tokens[-1] - self.tokens[0]) / (len(self.tokens) - 1)


class StreamRelay:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.streams: list[Timed] = []
        self.server: asyncio.Server | None = None
        self.port = 0
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            # The client closed its connections: let each handler see the end and finish.
            await asyncio.wait_for(asyncio.gather(*self._handlers, return_exceptions=True), 10)
            await self.server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        # A connection's first request starts when the client connected: its TTFT includes the connect.
        accepted = time.perf_counter()
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        current: list[Timed] = []

        async def requests() -> None:
            while data := await client_r.read(65536):
                if not current or current[-1].done:
                    timed = Timed(accepted if not current else time.perf_counter())
                    current.append(timed)
                    self.streams.append(timed)
                up_w.write(data)
                await up_w.drain()
            up_w.close()

        async def replies() -> None:
            pending = b""
            while data := await up_r.read(65536):
                now = time.perf_counter()
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    _note(line.strip(), now, current)
                client_w.write(data)
                await client_w.drain()
            client_w.close()

        # Both ways at once; when one fails (a connection reset), the other is cancelled (gather would
        # leave it running after this handler ended, its sockets open).
        ways = [asyncio.ensure_future(requests()), asyncio.ensure_future(replies())]
        try:
            await asyncio.wait(ways, return_when=asyncio.FIRST_EXCEPTION)
        finally:  # neither socket is left open, whatever ended the connection
            for way in ways:
                way.cancel()
            await asyncio.gather(*ways, return_exceptions=True)
            for writer in (up_w, client_w):
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()


def _note(line: bytes, now: float, current: list[Timed]) -> None:
    if not current or not line.startswith(b"data:"):
        return
    payload = line[5:].strip()
    if payload == b"[DONE]":
        current[-1].done = True
        return
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return
    for choice in event.get("choices") or ():
        if (choice.get("delta") or {}).get("content"):
            current[-1].tokens.append(now)
            return
