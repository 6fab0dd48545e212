"""The fast engine's ASGI bridge on a loopback socket, with a small ASGI app in place of the admin app:
the scope uvicorn would give, a status and repeated headers as sent, a streamed body, HEAD, and
`receive` after the body waiting for the client to leave (no busy loop)."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import orjson
import pytest

from costwarden.app.fast_bridge import Receive, Send, asgi_scope
from costwarden.app.fast_channel import FastChannel
from costwarden.app.fast_http import FastServer, Limits, Request
from tests.unit.app.test_fast_http import closed, response

Message = MutableMapping[str, Any]


class App:
    """Answers its scope and body; /stream in two chunks; /listen waits for the client to leave."""

    def __init__(self) -> None:
        self.receives = 0
        self.left = asyncio.Event()

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            self.receives += 1
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/listen":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"first", "more_body": True})
            if (await receive())["type"] == "http.disconnect":
                self.receives += 1
                self.left.set()
            return
        if scope["path"] == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"one,", "more_body": True})
            await send({"type": "http.response.body", "body": b"two", "more_body": False})
            return
        seen = {k: scope[k] for k in ("method", "path", "query_string", "root_path", "scheme", "http_version")}
        seen.update(raw_path=scope["raw_path"].decode(), client=scope["client"][0], body=body.decode())
        answer = orjson.dumps(seen, default=bytes.decode)
        headers = [(b"Content-Type", b"application/json"), (b"content-length", b"%d" % len(answer)),
                   (b"set-cookie", b"a=1; HttpOnly"), (b"set-cookie", b"b=2")]  # fmt: skip
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


@pytest.fixture
async def bridged() -> AsyncIterator[tuple[FastServer, App]]:
    app = App()

    async def handler(request: Request, channel: FastChannel) -> None:
        await app(asgi_scope(request), Receive(request), Send(channel, request))

    fast = FastServer(handler, Limits(header_timeout=2.0, header_cap=8192))
    await fast.start("127.0.0.1", 0)
    yield fast, app
    await fast.stop(1.0)


async def test_the_scope_status_and_repeated_headers(bridged: tuple[FastServer, App]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", bridged[0].port)
    writer.write(b"POST /admin/%64ocs?x=1 HTTP/1.1\r\nHost: g\r\nContent-Length: 2\r\n\r\nhi")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 201 Created\r\n")
    assert head.count(b"set-cookie: ") == 2 and b"set-cookie: a=1; HttpOnly\r\n" in head
    size = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
    seen = orjson.loads(await reader.readexactly(size))
    assert seen == {"method": "POST", "path": "/admin/docs", "query_string": "x=1", "root_path": "",
                    "scheme": "http", "http_version": "1.1", "raw_path": "/admin/%64ocs", "client": "127.0.0.1",
                    "body": "hi"}  # fmt: skip
    writer.write(b"GET /stream HTTP/1.1\r\nHost: g\r\n\r\nHEAD /stream HTTP/1.1\r\nHost: g\r\n\r\n")
    status, headers, body = await response(reader)
    assert (status, headers[b"transfer-encoding"], body) == (200, b"chunked", b"one,two")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)  # HEAD: the head, no chunk
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    writer.write(b"GET /stream HTTP/1.1\r\nHost: g\r\n\r\n")  # the connection still frames correctly after it
    assert (await response(reader))[2] == b"one,two"
    await closed(writer)


async def test_receive_after_the_body_waits_for_the_client_to_leave(bridged: tuple[FastServer, App]) -> None:
    fast, app = bridged
    reader, writer = await asyncio.open_connection("127.0.0.1", fast.port)
    writer.write(b"GET /listen HTTP/1.1\r\nHost: g\r\n\r\n")
    await asyncio.wait_for(reader.readuntil(b"first"), 5)
    await asyncio.sleep(0.1)
    assert not app.left.is_set() and app.receives == 1  # waiting, not spinning
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # gone at once (a reset)
    writer.transport.abort()
    await asyncio.wait_for(app.left.wait(), 5)
    assert app.receives == 2
