"""A background loop stops when its `stop()` lands in the same loop turn as a wake-up.

On Python 3.11, `asyncio.wait_for(event.wait(), t)` swallows a cancellation that arrives as the
event is set: the loop ran on and `stop()` waited for ever, so a gateway ignored SIGTERM until it
was killed (seen in CI: a replica took over 30 s to stop while the fleet's budget changed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path

import pytest

from costwarden.aio import cancel_and_wait, describe_tasks, wait_event
from costwarden.storage.memory_counters import MemoryCounters
from costwarden.storage.recorder import Recorder
from costwarden.storage.spool import Spool
from costwarden.storage.sqlite import SQLiteStore
from tests.unit.governance.test_governor import governor, team_budget
from tests.unit.storage.sample import MemoryLedger, record


async def ends(stop: Awaitable[None], within_s: float = 5.0) -> bool:
    """Whether `stop` ends by itself (not by a timeout's cancellation, which a stop may swallow)."""
    task = asyncio.ensure_future(stop)
    done, _ = await asyncio.wait({task}, timeout=within_s)
    if task in done:
        task.result()
        return True
    task.cancel()
    return False


async def test_a_loop_waiting_on_wait_event_stops_when_woken_and_cancelled_together() -> None:
    event = asyncio.Event()

    async def loop() -> None:
        while True:
            event.clear()
            await wait_event(event, 30)

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.01)
    event.set()
    task.cancel()
    async with asyncio.timeout(2):
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()


async def test_the_recorder_stops_when_a_full_batch_wakes_it_as_it_is_stopped(tmp_path: Path) -> None:
    ledger = MemoryLedger()
    recorder = Recorder(ledger, Spool(tmp_path / "spool"), interval_s=60.0, batch_size=2)
    recorder.start()
    await asyncio.sleep(0.01)
    recorder.append(record("a"))
    recorder.append(record("b"))  # a full batch: wakes the flusher
    assert await ends(recorder.stop())
    assert sorted(ledger.rows) == ["a", "b"]


async def test_the_governor_stops_when_a_request_wakes_it_as_it_is_stopped(tmp_path: Path) -> None:
    ledger = SQLiteStore(str(tmp_path / "ledger.db"))
    await ledger.open()
    try:
        gov, _ = governor([team_budget()], MemoryCounters(), ledger)
        gov.start()
        await asyncio.sleep(0.3)  # its first evaluation done: waiting for the next
        gov._health.wake.set()  # a request met unseeded counters
        assert await ends(gov.stop())
    finally:
        await ledger.close()


async def test_cancel_and_wait_lets_its_own_caller_be_cancelled() -> None:
    """A stop that is itself cancelled (a shutdown deadline) ends with CancelledError, not silently later."""

    async def slow_to_end() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await asyncio.sleep(30)  # cleaning up

    task = asyncio.create_task(slow_to_end())
    await asyncio.sleep(0)
    stopper = asyncio.create_task(cancel_and_wait(task))
    await asyncio.sleep(0.01)
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper


async def test_describe_tasks_names_each_waiting_task_and_where_it_waits() -> None:
    event = asyncio.Event()

    async def parked() -> None:
        await event.wait()

    task = asyncio.create_task(parked(), name="parked-loop")
    await asyncio.sleep(0)
    described = describe_tasks()
    event.set()
    await task
    assert "parked-loop: test_stop_while_woken.py:" in described and " parked" in described
