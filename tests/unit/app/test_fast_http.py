"""The fast engine's server side on a loopback socket, with a small handler in place of the gateway:
framing, pipelining, limits, refusals and write backpressure (the gateway on it: tests/integration)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from costwarden.app.fast_channel import FastChannel, head_bytes
from costwarden.app.fast_http import Connection, FastServer, Limits, Request

Opened = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def echo(request: Request, channel: FastChannel) -> None:
    """Answers the method, path and whole body it read; /stream answers chunked, /big a lot of it."""
    body = b""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
        body += message["body"]
        if not message["more_body"]:
            break
    if request.path == "/big":
        await channel.start(200, [(b"content-type", b"text/plain")])
        for _ in range(200):
            await channel.body(b"x" * 65536, True)
        await channel.body(b"", False)
        return
    if request.path == "/broken":
        await channel.start(200, [(b"content-type", b"text/event-stream")])
        await channel.body(b"data: 1\n\n", True)
        raise RuntimeError("a bug mid-response")
    if request.path == "/stream":
        await channel.start(200, [(b"content-type", b"text/event-stream")])
        await channel.body(b"data: 1\n\n", True)
        await channel.body(b"data: 2\n\n", False)
        return
    answer = orjson.dumps({"method": request.method, "path": request.path, "body": body.decode()})
    await channel.whole(200, [(b"content-type", b"application/json")], answer)


@pytest.fixture
async def server() -> AsyncIterator[FastServer]:
    fast = FastServer(echo, Limits(header_timeout=0.5, header_cap=8192))
    await fast.start("127.0.0.1", 0)
    yield fast
    await fast.stop(1.0)


async def opened(server: FastServer) -> Opened:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def closed(writer: asyncio.StreamWriter) -> None:
    writer.close()
    await writer.wait_closed()


async def response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status_line, *lines = head[:-4].split(b"\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines)}
    if b"content-length" in headers:
        return int(status_line.split()[1]), headers, await reader.readexactly(int(headers[b"content-length"]))
    body = b""
    while (size := int((await reader.readline()).strip(), 16)) > 0:
        body += await reader.readexactly(size)
        await reader.readline()
    await reader.readline()
    return int(status_line.split()[1]), headers, body


def test_head_bytes_frame_a_response() -> None:
    head = head_bytes(200, [(b"content-type", b"a/b"), (b"transfer-encoding", b"gzip")], False, True)
    assert head == b"HTTP/1.1 200 OK\r\ncontent-type: a/b\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"


async def test_keep_alive_pipelining_and_chunked_bodies(server: FastServer) -> None:
    reader, writer = await opened(server)
    writer.write(
        b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
        b"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n1\r\nf\r\n0\r\n\r\n"
        b"GET /stream HTTP/1.1\r\n\r\n"
    )
    first, second, third = [await response(reader) for _ in range(3)]
    assert orjson.loads(first[2]) == {"method": "POST", "path": "/a", "body": "abc"}
    assert orjson.loads(second[2]) == {"method": "POST", "path": "/b", "body": "def"}
    assert third[1][b"transfer-encoding"] == b"chunked" and third[2] == b"data: 1\n\ndata: 2\n\n"
    writer.write(b"GET /again HTTP/1.1\r\nConnection: close\r\n\r\n")
    status, headers, _ = await response(reader)
    assert status == 200 and headers[b"connection"] == b"close"
    assert await reader.read() == b""
    await closed(writer)


async def test_bad_bytes_after_good_requests_are_refused_after_their_answers(server: FastServer) -> None:
    reader, writer = await opened(server)
    writer.write(b"POST /a HTTP/1.1\r\nContent-Length: 1\r\n\r\nzGARBAGE\r\n\r\n")
    assert (await response(reader))[0] == 200
    status, headers, body = await response(reader)
    assert status == 400 and headers[b"connection"] == b"close"
    assert orjson.loads(body)["error"]["code"] == "malformed_request"
    assert await reader.read() == b""
    await closed(writer)


@pytest.mark.parametrize(
    "raw",
    [
        b"GET / HTTP/2.0\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nz",
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ],
)
async def test_what_llhttp_refuses_is_a_400_and_a_close(server: FastServer, raw: bytes) -> None:
    reader, writer = await opened(server)
    writer.write(raw)
    status, headers, _ = await response(reader)
    assert status == 400 and headers[b"connection"] == b"close"
    assert await reader.read() == b""
    await closed(writer)


async def test_headers_over_the_cap_get_431_and_a_request_line_over_it_414(server: FastServer) -> None:
    reader, writer = await opened(server)
    writer.write(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    status, headers, _ = await response(reader)
    assert status == 431 and headers[b"connection"] == b"close"
    await closed(writer)
    for sent in (b"GET /v1/" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n", b"GET /v1/" + b"a" * 20000):  # whole or not
        reader, writer = await opened(server)
        writer.write(sent)
        status, headers, body = await response(reader)
        assert status == 414 and headers[b"connection"] == b"close"
        assert orjson.loads(body)["error"]["code"] == "uri_too_long"  # OpenAI's shape: under /v1
        assert orjson.loads(body)["error"]["type"] == "invalid_request_error"
        await closed(writer)


async def test_unfinished_headers_time_out_with_408_and_an_idle_connection_just_closes(server: FastServer) -> None:
    reader, writer = await opened(server)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
    assert (await response(reader))[0] == 408
    await closed(writer)
    reader, writer = await opened(server)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    await closed(writer)


async def test_a_slow_reader_pauses_the_writer(server: FastServer) -> None:
    """/big writes 12.5 MiB; a client that reads nothing holds the handler at its first drain."""
    reader, writer = await opened(server)
    writer.write(b"GET /big HTTP/1.1\r\n\r\n")
    await asyncio.sleep(0.5)
    (conn,) = server._live
    transport = conn._transport
    assert transport is not None
    assert transport.get_write_buffer_size() < 4 * 1024 * 1024  # not the whole 12.5 MiB
    status, _, body = await response(reader)
    assert status == 200 and len(body) == 200 * 65536
    await closed(writer)


async def test_a_response_cut_short_by_a_bug_ends_the_connection(server: FastServer) -> None:
    reader, writer = await opened(server)
    writer.write(b"GET /broken HTTP/1.1\r\n\r\n")
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    rest = await asyncio.wait_for(reader.read(), 5)  # the connection ends at once: no hang
    assert rest.startswith(b"9\r\ndata: 1") and not rest.endswith(b"0\r\n\r\n")  # and the body never did
    await closed(writer)


async def test_keep_alive_idle_timeout_is_its_own_and_the_header_deadline_starts_at_the_first_byte() -> None:
    """Idle between requests: `idle_timeout` (the connection just closes); once the next request's first
    byte comes, `header_timeout` to finish its head (408)."""
    fast = FastServer(echo, Limits(header_timeout=0.4, header_cap=8192, idle_timeout=1.5))
    await fast.start("127.0.0.1", 0)
    try:
        reader, writer = await opened(fast)
        writer.write(b"GET /a HTTP/1.1\r\n\r\n")
        assert (await response(reader))[0] == 200
        await asyncio.sleep(0.8)  # past the header deadline, within the idle timeout: still open
        writer.write(b"GET /b HTTP/1.1\r\n\r\n")
        assert (await response(reader))[0] == 200
        writer.write(b"GET /c HTTP/1.1\r\n")  # a head begun and never ended
        status, headers, _ = await response(reader)
        assert status == 408 and headers[b"connection"] == b"close"
        await closed(writer)
        reader, writer = await opened(fast)
        writer.write(b"GET /a HTTP/1.1\r\n\r\n")
        assert (await response(reader))[0] == 200
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # idle: closed, no answer
        assert asyncio.get_running_loop().time() - started > 1.0
        await closed(writer)
    finally:
        await fast.stop(1.0)


async def test_a_connection_serves_at_most_max_requests() -> None:
    fast = FastServer(echo, Limits(header_timeout=2, header_cap=8192, max_requests=2))
    await fast.start("127.0.0.1", 0)
    try:
        reader, writer = await opened(fast)
        writer.write(b"GET /a HTTP/1.1\r\n\r\n")
        status, headers, _ = await response(reader)
        assert status == 200 and b"connection" not in headers
        writer.write(b"GET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n")  # /c pipelined past the limit
        status, headers, body = await response(reader)
        assert status == 200 and headers[b"connection"] == b"close" and orjson.loads(body)["path"] == "/b"
        assert await asyncio.wait_for(reader.read(), 5) == b""  # /c is not answered: the client sends it again
        await closed(writer)
    finally:
        await fast.stop(1.0)


async def test_a_target_past_what_the_url_parser_takes_is_414_not_400() -> None:
    """httptools' URL parser takes at most 64 KiB; a longer target within the head cap is still a 414."""
    fast = FastServer(echo, Limits(header_timeout=2, header_cap=512 * 1024))
    await fast.start("127.0.0.1", 0)
    try:
        reader, writer = await opened(fast)
        writer.write(b"GET /v1/" + b"a" * (100 * 1024) + b" HTTP/1.1\r\n\r\n")
        status, headers, body = await response(reader)
        assert status == 414 and headers[b"connection"] == b"close"
        assert orjson.loads(body)["error"]["code"] == "uri_too_long"
        await closed(writer)
    finally:
        await fast.stop(1.0)


async def test_a_body_that_came_with_its_head_is_taken_whole_and_a_late_one_is_received() -> None:
    seen: list[bytes | None] = []

    async def whole_or_receive(request: Request, channel: FastChannel) -> None:
        body = request.whole()
        seen.append(body)
        if body is None:
            message = await request.receive()
            body = message["body"]
            while message["more_body"]:
                message = await request.receive()
                body += message["body"]
        assert (await request.receive())["body"] == b""  # taken: nothing read twice
        await channel.whole(200, [], body)

    fast = FastServer(whole_or_receive, Limits(header_timeout=0.5, header_cap=8192))
    await fast.start("127.0.0.1", 0)
    try:
        reader, writer = await opened(fast)
        writer.write(b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
        assert (await response(reader))[2] == b"abc"
        writer.write(b"GET /b HTTP/1.1\r\n\r\n")
        assert (await response(reader))[2] == b""
        writer.write(b"POST /c HTTP/1.1\r\nContent-Length: 6\r\n\r\nabc")
        await asyncio.sleep(0.05)
        writer.write(b"def")
        assert (await response(reader))[2] == b"abcdef"
        assert seen == [b"abc", b"", None]
        await closed(writer)
    finally:
        await fast.stop(1.0)


def probes(request: Request) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
    """An `Instant` answering /healthz only."""
    return (
        (200, [(b"content-type", b"application/json")], b'{"status":"alive"}') if request.path == "/healthz" else None
    )


class Transport(asyncio.Transport):
    """What a connection writes, kept (a unit test of when it writes, not of sockets)."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1)


async def test_a_probe_is_answered_in_the_loop_turn_that_reads_it() -> None:
    """No task between its bytes and its answer: the event loop does not wait for the GIL a second
    time while worker threads render a scrape or a report (issue 14)."""
    conn = Connection(echo, Limits(header_timeout=2, header_cap=8192), set(), probes)
    transport = Transport()
    conn.connection_made(transport)
    conn.data_received(b"GET /healthz HTTP/1.1\r\n\r\n")
    assert transport.written == [
        b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 18\r\n\r\n{"status":"alive"}'
    ]
    conn.data_received(b"GET /other HTTP/1.1\r\n\r\n")  # not a probe: the handler's, in a task
    assert len(transport.written) == 1
    conn.connection_lost(None)


async def test_probes_keep_their_place_among_pipelined_requests() -> None:
    fast = FastServer(echo, Limits(header_timeout=2, header_cap=8192), probes)
    await fast.start("127.0.0.1", 0)
    try:
        reader, writer = await opened(fast)
        writer.write(
            b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /healthz HTTP/1.1\r\n\r\n"
            b"HEAD /healthz HTTP/1.1\r\n\r\n"
            b"GET /healthz HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"  # a body: the handler's
            b"GET /stream HTTP/1.1\r\n\r\n"
            b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"
        )
        assert orjson.loads((await response(reader))[2])["path"] == "/a"
        assert (await response(reader))[2] == b'{"status":"alive"}'
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)  # HEAD: the length, no body
        assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: 18" in head
        assert orjson.loads((await response(reader))[2]) == {"method": "GET", "path": "/healthz", "body": "hi"}
        assert (await response(reader))[2] == b"data: 1\n\ndata: 2\n\n"
        status, headers, body = await response(reader)
        assert (status, headers[b"connection"], body) == (200, b"close", b'{"status":"alive"}')
        assert await asyncio.wait_for(reader.read(), 5) == b""
        await closed(writer)
    finally:
        await fast.stop(1.0)
