"""services/readiness.LedgerReadiness: `/readyz` reads a ping result kept fresh in the background;
a ledger that refuses or stops answering turns it not-ready within a bound."""

from __future__ import annotations

import asyncio

from costwarden.services.readiness import LedgerReadiness
from tests.unit.clock import Clock


class Ping:
    """A database ping that answers, refuses, raises or hangs, as told; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.answer: bool | None = True  # None: hangs
        self.error: Exception | None = None

    async def __call__(self) -> bool:
        self.calls += 1
        if self.error is not None:
            raise self.error
        if self.answer is None:
            await asyncio.Event().wait()
        return bool(self.answer)


async def test_reading_readiness_does_not_ping() -> None:
    ping = Ping()
    readiness = LedgerReadiness(ping, every_s=60.0)
    await readiness.start()
    try:
        assert all(readiness.answering for _ in range(100))
        assert ping.calls == 1  # the check at start only
    finally:
        await readiness.stop()


async def turns(readiness: LedgerReadiness, answering: bool) -> None:
    async with asyncio.timeout(2):
        while True:
            if readiness.answering is answering:
                return
            await asyncio.sleep(0.005)


async def test_a_refusing_ledger_is_not_ready_after_the_next_ping() -> None:
    ping = Ping()
    readiness = LedgerReadiness(ping, every_s=0.02)
    await readiness.start()
    try:
        assert readiness.answering
        ping.answer = False
        await turns(readiness, False)
        ping.answer = True
        await turns(readiness, True)
    finally:
        await readiness.stop()


async def test_a_ping_that_raises_a_connection_error_counts_as_refused() -> None:
    ping = Ping()
    ping.error = ConnectionRefusedError("no server on that port")
    readiness = LedgerReadiness(ping)
    assert not await readiness.check()
    assert not readiness.answering


async def test_a_hanging_ping_fails_after_the_staleness_bound() -> None:
    ping = Ping()
    ping.answer = None
    readiness = LedgerReadiness(ping, stale_after_s=0.05)
    assert not await asyncio.wait_for(readiness.check(), 2)
    assert not readiness.answering


async def test_a_result_older_than_the_bound_is_not_trusted() -> None:
    """A ping still in flight (the database hangs): the last success ages out on its own."""
    ping, clock = Ping(), Clock()
    readiness = LedgerReadiness(ping, every_s=60.0, stale_after_s=3.0, clock=clock)
    assert await readiness.check()
    clock.now += 3.0
    assert readiness.answering
    clock.now += 0.01
    assert not readiness.answering


async def test_not_ready_before_the_first_ping() -> None:
    assert not LedgerReadiness(Ping()).answering
