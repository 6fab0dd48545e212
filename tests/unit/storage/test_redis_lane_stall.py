"""The Redis lane's reply timeout does not count a stalled event loop against Redis.

A burst through three replicas answered 31 of 358 requests with 503 while Redis was up: the loop of
the gateway was busy past the deadline (aiohttp imported by the first forwarded request, under CI's
load), the reply and the timer became due in the same turn, and the timer won. A fake Redis on
loopback (in a thread of its own) answers PING after `DELAY_S`; the test's loop stalls across the
deadline in the meantime.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import TimeoutError as RedisTimeoutError

from costwarden.aio import ReplyTimeout
from costwarden.storage.redis_counters import _Lane, _packed

DELAY_S = 0.05


class _FakeRedis:
    """Answers every command with +OK at once, PING with +PONG after `delay` (None: never)."""

    def __init__(self, delay: float | None) -> None:
        self.delay = delay
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(5)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()
        self.loop.close()

    async def _shutdown(self) -> None:
        self.server.close()
        for writer in self.writers:
            writer.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in self.writers:
            await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        while True:
            head = await reader.readline()
            if not head:
                return
            args = []
            for _ in range(int(head[1:])):
                size = int((await reader.readline())[1:])
                args.append((await reader.readexactly(size + 2))[:-2])
            if args[0].upper() == b"PING":
                if self.delay is None:
                    continue
                await asyncio.sleep(self.delay)
                writer.write(b"+PONG\r\n")
            else:
                writer.write(b"+OK\r\n")
            await writer.drain()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def slow_redis() -> Iterator[_FakeRedis]:
    server = _FakeRedis(DELAY_S)
    yield server
    server.stop()


@pytest.fixture
def mute_redis() -> Iterator[_FakeRedis]:
    server = _FakeRedis(None)
    yield server
    server.stop()


def _lane(port: int, timeout: float) -> _Lane:
    pool = aioredis.BlockingConnectionPool.from_url(f"redis://127.0.0.1:{port}/0")
    return _Lane(pool, 4, 1.0, timeout)


def test_a_reply_that_arrived_while_the_loop_was_stalled_past_the_deadline_is_read(slow_redis: _FakeRedis) -> None:
    async def main() -> bytes:
        lane = _lane(slow_redis.port, timeout=0.2)
        await lane.call(_packed(b"ECHO", b"x"))  # connected: the stall below falls inside the wait for PONG
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, time.sleep, 0.5)  # blocks the loop from 10 to 510 ms; the deadline is at 200
        try:
            return await lane.call(_packed(b"PING"))
        finally:
            await lane.close()

    started = time.monotonic()
    assert asyncio.run(main()) == b"PONG"  # raised "no reply from Redis within 0.2 s" before
    assert time.monotonic() - started < 2


def test_a_redis_that_never_answers_still_times_out(mute_redis: _FakeRedis) -> None:
    async def main() -> None:
        lane = _lane(mute_redis.port, timeout=0.2)
        await lane.call(_packed(b"ECHO", b"x"))
        try:
            await lane.call(_packed(b"PING"))
        finally:
            await lane.close()

    started = time.monotonic()
    with pytest.raises(RedisTimeoutError, match=r"within 0\.2 s"):
        asyncio.run(main())
    assert 0.19 <= time.monotonic() - started < 1


def test_a_stalled_loop_extends_the_wait_once_by_its_lateness_then_times_out(mute_redis: _FakeRedis) -> None:
    async def main() -> float:
        lane = _lane(mute_redis.port, timeout=0.2)
        await lane.call(_packed(b"ECHO", b"x"))
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, time.sleep, 0.3)  # 100 ms late at the deadline: granted once
        started = time.monotonic()
        try:
            with pytest.raises(RedisTimeoutError):
                await lane.call(_packed(b"PING"))
        finally:
            await lane.close()
        return time.monotonic() - started

    waited = asyncio.run(main())
    assert 0.38 <= waited < 0.8  # 0.31 s stalled + the 0.1 s of lateness granted; never twice


def test_reply_timeout_expires_on_time_when_the_loop_is_free() -> None:
    async def main() -> float:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with ReplyTimeout(asyncio.get_running_loop(), 0.05):
                await asyncio.sleep(10)
        return time.monotonic() - started

    assert 0.05 <= asyncio.run(main()) < 0.5


def test_reply_timeout_leaves_a_block_that_ends_in_time_alone() -> None:
    async def main() -> None:
        async with ReplyTimeout(asyncio.get_running_loop(), 0.05):
            await asyncio.sleep(0)
        await asyncio.sleep(0.1)  # its timer was cancelled: nothing fires into this task now

    asyncio.run(main())
