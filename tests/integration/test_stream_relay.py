"""The stream relay that test_bench_stream times requests with leaves no socket open when a client resets
its connection mid-stream (a fresh-clone run failed test_bench_stream at teardown on one such socket)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import struct
import warnings

from tests.integration.stream_relay import StreamRelay

CHUNK = b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n' * 50


async def _upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(100)
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
    with contextlib.suppress(ConnectionError, asyncio.CancelledError):
        for _ in range(200):
            writer.write(CHUNK)
            await writer.drain()
            await asyncio.sleep(0.005)
    writer.close()


async def _reset_midway() -> None:
    upstream = await asyncio.start_server(_upstream, "127.0.0.1", 0)
    relay = StreamRelay(upstream.sockets[0].getsockname()[1])
    await relay.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\n\r\n")
    await writer.drain()
    assert await reader.read(1000)  # the stream has begun
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = a reset
    writer.transport.abort()
    await asyncio.sleep(0.3)
    await relay.stop()
    upstream.close()
    await upstream.wait_closed()


def test_a_client_reset_midway_leaves_no_socket_open() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        asyncio.run(_reset_midway())
        gc.collect()
    leaked = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaked, leaked  # two sockets (client side, upstream side) and their transports before
