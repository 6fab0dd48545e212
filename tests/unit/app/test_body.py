"""BodyReader: a body is whole only when the client says so; deadline, size and slow-client bound."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import pytest

from costwarden.app.body import BodyReader
from costwarden.protocols.errors import GatewayError

Message = MutableMapping[str, Any]


class Client:
    """Plays ASGI receive events; after the script, waits forever (a client that stops sending)."""

    def __init__(self, *events: Message) -> None:
        self._events = list(events)

    async def receive(self) -> Message:
        if self._events:
            return self._events.pop(0)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def part(body: bytes, more: bool = True) -> Message:
    return {"type": "http.request", "body": body, "more_body": more}


DISCONNECT: Message = {"type": "http.disconnect"}


def length(n: int) -> list[tuple[bytes, bytes]]:
    return [(b"content-length", str(n).encode())]


async def refused(reader: BodyReader, client: Client, headers: list[tuple[bytes, bytes]] | None = None) -> GatewayError:
    reader.start()
    try:
        with pytest.raises(GatewayError) as info:
            await reader.read(headers or [], client.receive)
    finally:
        await reader.stop()
    assert reader.reading == 0  # every slot is given back
    return info.value


async def test_a_body_in_parts_is_joined() -> None:
    reader = BodyReader(100, 5, 2)
    assert await reader.read(length(6), Client(part(b"abc"), part(b"def", more=False)).receive) == b"abcdef"
    assert reader.reading == 0


@pytest.mark.parametrize("sent", [[], [part(b"abc")], [part(b""), part(b"ab")]])
async def test_a_disconnect_before_the_last_part_is_an_incomplete_body(sent: list[Message]) -> None:
    error = await refused(BodyReader(100, 5, 2), Client(*sent, DISCONNECT), length(10))
    assert (error.status, error.code) == (499, "incomplete_body")
    assert "of 10 bytes" in error.message


async def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    error = await refused(BodyReader(10, 5, 2), Client(), length(11))
    assert (error.status, error.code) == (413, "request_too_large")


async def test_a_streamed_body_over_the_limit_is_refused_mid_stream() -> None:
    error = await refused(BodyReader(10, 5, 2), Client(part(b"x" * 6), part(b"x" * 5)))
    assert (error.status, error.code) == (413, "request_too_large")


async def test_exactly_the_limit_is_accepted() -> None:
    assert await BodyReader(10, 5, 2).read([], Client(part(b"x" * 10, more=False)).receive) == b"x" * 10


async def test_a_body_that_stops_coming_times_out() -> None:
    error = await refused(BodyReader(100, 0.05, 2), Client(part(b"abc")), length(10))
    assert (error.status, error.code) == (408, "body_timeout")


async def test_when_every_slot_is_taken_a_slow_body_gets_503_and_a_whole_one_passes() -> None:
    reader = BodyReader(100, 5, 1)
    reader.start()
    slow = asyncio.create_task(reader.read([], Client(part(b"a")).receive))
    await asyncio.sleep(0)
    assert reader.reading == 1
    assert await reader.read([], Client(part(b"whole", more=False)).receive) == b"whole"
    reader._grace = 0.05
    error = await refused_while(reader, Client(part(b"b")))
    assert (error.status, error.code, error.headers) == (503, "too_many_slow_clients", ((b"retry-after", b"1"),))
    slow.cancel()  # a cancellation that is not the deadline's passes through untouched
    with pytest.raises(asyncio.CancelledError):
        await slow
    await reader.stop()
    assert reader.reading == 0


async def test_the_deadline_is_total_not_per_part() -> None:
    """A part every 20 ms keeps an idle timer happy; the whole body still has 0.15 s."""

    class Trickle:
        async def receive(self) -> Message:
            await asyncio.sleep(0.02)
            return part(b"x")

    reader = BodyReader(10_000, 0.15, 2)
    reader.start()
    started = asyncio.get_running_loop().time()
    with pytest.raises(GatewayError) as info:
        await reader.read([], Trickle().receive)
    await reader.stop()
    assert info.value.code == "body_timeout"
    assert 0.15 <= asyncio.get_running_loop().time() - started < 1.0


async def refused_while(reader: BodyReader, client: Client) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        await reader.read([], client.receive)
    return info.value


def _stream_plan(head: bytes) -> str:
    return "stream" if head.startswith(b"head") else "more"


async def _relayed(reader: BodyReader, client: Client) -> tuple[bytes, list[bytes], GatewayError | None]:
    reader.start()
    try:
        head, stream = await reader.read_head([], client.receive, _stream_plan)
        assert stream is not None and reader.reading == 0  # the rest holds no slow-body slot
        chunks: list[bytes] = []
        try:
            async for chunk in stream.rest(lambda chunk, last: None):
                chunks.append(chunk)
        except GatewayError as error:
            assert stream.error is error
        return head, chunks, stream.error
    finally:
        await reader.stop()


async def test_a_streamed_body_is_its_head_then_the_rest_chunk_by_chunk_within_the_limit() -> None:
    reader = BodyReader(max_bytes=20, timeout_seconds=5, max_slow=4)
    head, chunks, error = await _relayed(reader, Client(part(b"he"), part(b"ad-"), part(b"abc"), part(b"", False)))
    assert (head, chunks, error) == (b"head-", [b"abc"], None)
    over = Client(part(b"head-"), part(b"x" * 10), part(b"y" * 10), part(b"z", False))
    head, chunks, error = await _relayed(reader, over)
    assert chunks == [b"x" * 10] and error is not None and (error.status, error.code) == (413, "request_too_large")
    gone = Client(part(b"head-"), part(b"x"), DISCONNECT)
    _, chunks, error = await _relayed(reader, gone)
    assert chunks == [b"x"] and error is not None and error.status == 499


async def test_a_streamed_body_that_stops_coming_is_a_timeout() -> None:
    reader = BodyReader(max_bytes=100, timeout_seconds=0.3, max_slow=4)
    _, chunks, error = await _relayed(reader, Client(part(b"head-"), part(b"x")))
    assert chunks == [b"x"] and error is not None and (error.status, error.code) == (408, "body_timeout")
