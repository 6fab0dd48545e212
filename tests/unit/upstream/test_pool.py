"""The fast engine's upstream client against small loopback servers written for each answer shape."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest

from costwarden.upstream.pool import MAX_TARGETS, Broken, NotSent, UpstreamPool
from tests.unit.loop_calls import count_loop_lookups

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


def test_the_host_header_brackets_an_ipv6_literal_and_leaves_out_the_default_port() -> None:
    pool = UpstreamPool()
    cases = {
        "http://[::1]:8080/v1": ("::1", 8080, "[::1]:8080"),
        "http://[::1]/v1": ("::1", 80, "[::1]"),
        "http://model.local/v1": ("model.local", 80, "model.local"),
        "https://model.local:443/v1": ("model.local", 443, "model.local"),
        "https://model.local:80/v1": ("model.local", 80, "model.local:80"),
        "http://10.0.0.1:8000/": ("10.0.0.1", 8000, "10.0.0.1:8000"),
    }
    for url, (host, port, header) in cases.items():
        (got_host, got_port, _), _, got_header = pool.target(url)
        assert (got_host, got_port, got_header) == (host, port, header), url


def test_a_url_is_split_once_and_the_split_urls_kept_are_bounded() -> None:
    pool = UpstreamPool()
    url = "http://10.0.0.1:8000/v1/chat/completions"
    assert pool.target(url) is pool.target(url)  # nothing made per request
    assert pool.target(url, False) is not pool.target(url)  # another TLS setting: another entry
    for n in range(2 * MAX_TARGETS):  # passthrough paths and queries: no unbounded growth
        assert pool.target(f"http://10.0.0.1:8000/proxy?page={n}")[1] == f"/proxy?page={n}"
    assert len(pool._targets) <= MAX_TARGETS


async def test_an_ipv6_upstream_is_reached_and_sent_its_host_in_brackets() -> None:
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await _head(reader))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "::1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = UpstreamPool()
    try:
        async with pool.request("GET", f"http://[::1]:{port}/x", data=None, headers={}, timeout=TIMEOUT) as response:
            assert await response.read() == b"ok"
    finally:
        await pool.close()
        server.close()
        await server.wait_closed()
    assert f"\r\nhost: [::1]:{port}\r\n".encode() in heads[0]


async def test_a_connection_idle_past_the_cap_is_not_reused(
    upstream: Callable[..., Awaitable[tuple[str, list[int]]]],
) -> None:
    url, connections = await upstream(keep_alive)
    pool = UpstreamPool(max_idle_seconds=0.2)
    for pause in (0.0, 0.05, 0.4, 0.0):  # the third comes after 0.4 s idle: a new connection
        await asyncio.sleep(pause)
        async with pool.request("GET", url + "/a", data=None, headers={}, timeout=TIMEOUT) as response:
            assert await response.read() == b"/a"
    assert len(connections) == 2
    await pool.close()


async def test_a_stale_keep_alive_connection_is_retried_once_for_idempotent_methods_only(
    upstream: Callable[..., Awaitable[tuple[str, list[int]]]],
) -> None:
    """The upstream answers one request per connection but keeps it alive, then closes it when the
    next request comes (its keep-alive timer fired as the request went): a GET is sent again on a
    new connection; a POST is not (the upstream may have acted on it): Broken, as aiohttp raises."""

    async def one_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await _head(reader)
        body = head.split(b" ")[1]
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # the next request: closed unanswered

    url, connections = await upstream(one_then_close)
    pool = UpstreamPool()
    for path in ("/a", "/b", "/c"):
        async with pool.request("GET", url + path, data=None, headers={}, timeout=TIMEOUT) as response:
            assert await response.read() == path.encode()
    assert len(connections) == 3  # /b and /c each found the previous connection stale, and reconnected
    with pytest.raises(Broken):
        async with pool.request("POST", url + "/d", data=b"{}", headers={}, timeout=TIMEOUT):
            pass
    assert len(connections) == 3
    async with pool.request("POST", url + "/e", data=b"{}", headers={}, timeout=TIMEOUT) as response:
        assert await response.read() == b"/e"  # the broken one was not pooled: a new connection
    await pool.close()


def _stream(chunks: int, gap: float) -> Answer:
    """A chunked answer of `chunks` chunks, `gap` seconds apart."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for i in range(chunks):
            await asyncio.sleep(gap)
            writer.write(b"2\r\n%02d\r\n" % i)
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    return answer


async def test_a_streamed_answer_arms_one_read_timer_not_one_per_chunk(
    upstream: Callable[..., Awaitable[tuple[str, list[int]]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    armed: list[object] = []  # the pool's timers (the upstream below runs on the same loop: its sleeps are not)
    for name in ("call_at", "call_later"):
        real = getattr(loop, name)

        def counting(
            when: float, callback: Any, *args: object, _real: Callable[..., object] = real, **kwargs: object
        ) -> object:
            if getattr(callback, "__module__", "") == "costwarden.upstream.pool":
                armed.append(callback)
            return _real(when, callback, *args, **kwargs)

        monkeypatch.setattr(loop, name, counting)
    url, _ = await upstream(_stream(20, 0.005))
    pool = UpstreamPool()
    async with pool.request("GET", url + "/", data=None, headers={}, timeout=TIMEOUT) as response:
        got = [chunk async for chunk in response.content.iter_any()]
    monkeypatch.undo()
    await pool.close()
    assert b"".join(got) == b"".join(b"%02d" % i for i in range(20))
    assert len(armed) == 1  # the response's read timer, armed once (before: once a wait, 21 waits)


async def test_the_read_timeout_counts_from_each_wait_not_from_the_answers_start(
    upstream: Callable[..., Awaitable[tuple[str, list[int]]]],
) -> None:
    pool = UpstreamPool()
    url, _ = await upstream(_stream(6, 0.2))  # 1.2 s in all, every gap under the 0.5 s read timeout
    async with pool.request("GET", url + "/", data=None, headers={}, timeout=TIMEOUT) as response:
        assert len(b"".join([chunk async for chunk in response.content.iter_any()])) == 12
    url, _ = await upstream(_stream(2, 0.8))  # a gap over it
    async with pool.request("GET", url + "/", data=None, headers={}, timeout=TIMEOUT) as response:
        with pytest.raises(TimeoutError):
            await response.read()
    await pool.close()


async def test_a_response_does_not_ask_for_the_running_loop(
    upstream: Callable[..., Awaitable[tuple[str, list[int]]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each `asyncio.get_running_loop()` is a getpid() system call in CPython 3.11: a connection asks
    once, its responses use its loop."""
    url, _ = await upstream(keep_alive)
    pool = UpstreamPool()
    asked = count_loop_lookups(monkeypatch)
    for i in range(10):
        async with pool.request("GET", f"{url}/{i}", data=None, headers={}, timeout=TIMEOUT) as response:
            assert await response.read() == f"/{i}".encode()
    monkeypatch.undo()
    await pool.close()
    assert len(asked) <= 2  # the connection's (made once, reused) and its connect; 10 responses asked before
