"""The calibration row: a bare reverse proxy on raw asyncio protocols with httptools on both sides.

No framework, no metering, no tasks: callbacks only, uvloop, a keep-alive upstream pool. It is the
floor for a Python data plane on this transport (bench/run.py target `rawproxy`); it is not a
product, and handles only what the benchmark sends (one request at a time per connection,
Content-Length bodies both ways).

    python bench/rawproxy.py PORT UPSTREAM_HOST UPSTREAM_PORT
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

import httptools
import uvloop

_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"host"}


class Upstream(asyncio.Protocol):
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.client: Client | None = None
        self.head: list[bytes] = []
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.pool.idle:
            self.pool.idle.remove(self)
        if self.client is not None:
            self.client.fail()

    def send(self, client: Client, data: bytes) -> None:
        self.client, self.head, self.body = client, [], []
        assert self.transport is not None
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in _HOP:
            self.head.append(name + b": " + value + b"\r\n")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        client, self.client = self.client, None
        body = b"".join(self.body)
        status = self.parser.get_status_code()
        head = b"HTTP/1.1 %d OK\r\n" % status + b"".join(self.head) + b"content-length: %d\r\n\r\n" % len(body)
        self.pool.idle.append(self)
        if client is not None:
            client.answer(head + body)


class Pool:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[Upstream] = []

    def send(self, client: Client, data: bytes) -> None:
        if self.idle:
            self.idle.pop().send(client, data)
            return
        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.create_connection(lambda: Upstream(self), self.host, self.port))
        task.add_done_callback(lambda t: t.result()[1].send(client, data) if not t.exception() else client.fail())


class Client(asyncio.Protocol):
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.head: list[bytes] = []
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url, self.head, self.body = b"", [], []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in _HOP:
            self.head.append(name + b": " + value + b"\r\n")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self.body)
        method = self.parser.get_method()
        request = b"%s %s HTTP/1.1\r\nhost: %s\r\n" % (method, self.url, self.pool.host.encode())
        request += b"".join(self.head) + b"content-length: %d\r\n\r\n" % len(body) + body
        self.pool.send(self, request)

    def answer(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def fail(self) -> None:
        self.answer(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        if self.transport is not None:
            self.transport.close()


async def main(port: int, upstream_host: str, upstream_port: int) -> None:
    pool = Pool(upstream_host, upstream_port)
    server = await asyncio.get_running_loop().create_server(lambda: Client(pool), "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
