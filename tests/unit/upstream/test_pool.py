"""The fast engine's upstream client against small loopback servers written for each answer shape."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace

import pytest

from costwarden.upstream.pool import Broken, NotSent, UpstreamPool

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
TIMEOUT = SimpleNamespace(sock_connect=2.0, sock_read=0.5)


async def _head(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":")[1]))
    return head


@pytest.fixture
async def upstream() -> AsyncIterator[Callable[[Answer], Awaitable[tuple[str, list[int]]]]]:
    servers: list[asyncio.Server] = []

    async def start(answer: Answer) -> tuple[str, list[int]]:
        connections: list[int] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(1)
            try:
                await answer(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", connections

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        head = await _head(reader)
        body = head.split(b" ")[1]  # the path, echoed
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()


async def test_a_connection_is_reused_and_the_request_is_framed(
    upstream: Callable[..., Awaitable[tuple[str, list[int]]]],
) -> None:
    url, connections = await upstream(keep_alive)
    pool = UpstreamPool()
    for path in ("/a", "/b?x=1", "/c"):
        async with pool.request("POST", url + path, data=b"{}", headers={"x-k": "v"}, timeout=TIMEOUT) as response:
            assert response.status == 200 and response.content_type == "text/plain"
            assert await response.read() == path.encode()
            assert response.headers.get("Content-Length") == str(len(path))
    assert len(connections) == 1
    await pool.close()


async def test_chunked_and_close_delimited_bodies(upstream: Callable[..., Awaitable[tuple[str, list[int]]]]) -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        await writer.drain()

    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
        await writer.drain()

    pool = UpstreamPool()
    for answer, expected in ((chunked, b"abcde"), (until_close, b"all of it")):
        url, _ = await upstream(answer)
        async with pool.request("GET", url + "/", data=None, headers={}, timeout=TIMEOUT) as response:
            chunks = [c async for c in response.content.iter_any()]
            assert b"".join(chunks) == expected
    await pool.close()


async def test_no_upstream_is_not_sent_a_silent_one_times_out_a_broken_one_is_broken(
    upstream: Callable[..., Awaitable[tuple[str, list[int]]]],
) -> None:
    pool = UpstreamPool()
    with pytest.raises(NotSent):
        async with pool.request("GET", "http://127.0.0.1:9/", data=None, headers={}, timeout=TIMEOUT):
            pass

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _head(reader)
        await asyncio.sleep(2)

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this")
        await writer.drain()

    url, _ = await upstream(silent)
    with pytest.raises(TimeoutError):
        async with pool.request("GET", url + "/", data=None, headers={}, timeout=TIMEOUT):
            pass
    url, connections = await upstream(cut)
    for _ in range(2):  # a connection whose answer broke off is never reused
        async with pool.request("GET", url + "/", data=None, headers={}, timeout=TIMEOUT) as response:
            with pytest.raises(Broken):
                await response.read()
    assert len(connections) == 2
    await pool.close()


async def test_a_head_answer_has_no_body_whatever_its_length_says(
    upstream: Callable[..., Awaitable[tuple[str, list[int]]]],
) -> None:
    """llhttp would wait for the announced body: the pool ends a HEAD answer at its headers, and the
    connection serves the next request."""

    async def head_then_get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await _head(reader)
            if head.startswith(b"HEAD "):
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 42\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nafter")
            await writer.drain()

    url, connections = await upstream(head_then_get)
    pool = UpstreamPool()
    for method, expected in (("HEAD", b""), ("GET", b"after"), ("HEAD", b""), ("GET", b"after")):
        async with pool.request(method, url + "/", data=None, headers={}, timeout=TIMEOUT) as response:
            assert response.status == 200
            assert await response.read() == expected
            if method == "HEAD":
                assert response.headers.get("content-length") == "42"
    assert len(connections) == 1
    await pool.close()
