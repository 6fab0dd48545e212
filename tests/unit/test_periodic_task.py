"""costwarden.aio.PeriodicTask: the one background loop the services run their rounds in."""

from __future__ import annotations

import asyncio
import logging

import pytest

from costwarden.aio import PeriodicTask
from tests.unit.services.test_stop_while_woken import ends

log = logging.getLogger("tests.periodic")


class Steps:
    """A step that counts its runs, can fail, and can be held mid-run."""

    def __init__(self, failures: int = 0) -> None:
        self.runs = 0
        self.failures = failures
        self.ran = asyncio.Event()
        self.hold: asyncio.Event | None = None

    async def __call__(self) -> None:
        self.runs += 1
        self.ran.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the store is away")

    async def next_run(self, within_s: float = 2.0) -> None:
        self.ran.clear()
        async with asyncio.timeout(within_s):
            await self.ran.wait()


def periodic(step: Steps, every_s: float, wait_first: bool = False) -> PeriodicTask:
    return PeriodicTask("test-periodic", step, every_s, log=log, failure="could not step", wait_first=wait_first)


async def test_it_steps_at_once_then_every_interval() -> None:
    step = Steps()
    task = periodic(step, 0.02)
    task.start()
    await asyncio.sleep(0)
    assert step.runs == 1
    await step.next_run()
    await step.next_run()
    assert step.runs >= 3
    await task.stop()


async def test_with_wait_first_the_first_step_waits_for_the_interval() -> None:
    step = Steps()
    task = periodic(step, 30, wait_first=True)
    task.start()
    await asyncio.sleep(0.05)
    assert step.runs == 0
    task.wake()
    await step.next_run()
    assert step.runs == 1
    await task.stop()


async def test_a_wake_runs_the_next_step_at_once() -> None:
    step = Steps()
    task = periodic(step, 30)
    task.start()
    await asyncio.sleep(0.01)
    assert step.runs == 1
    task.wake()
    await step.next_run()
    assert step.runs == 2
    await task.stop()


async def test_a_wake_during_a_step_runs_the_next_step_at_once() -> None:
    step = Steps()
    step.hold = asyncio.Event()
    task = periodic(step, 30)
    task.start()
    await asyncio.sleep(0.01)
    task.wake()  # while the first step is held
    step.hold.set()
    await step.next_run()
    assert step.runs == 2
    await task.stop()


async def test_a_failing_step_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    step = Steps(failures=2)
    task = periodic(step, 0.01)
    with caplog.at_level(logging.WARNING, logger=log.name):
        task.start()
        for _ in range(3):
            await step.next_run()
        await task.stop()
    failed = [r for r in caplog.records if r.name == log.name]
    assert len(failed) == 2
    assert failed[0].levelno == logging.WARNING
    assert failed[0].getMessage() == "could not step, retried in 0.01 s: RuntimeError: the store is away"


async def test_it_stops_when_woken_in_the_same_turn_as_stopped() -> None:
    step = Steps()
    task = periodic(step, 30)
    task.start()
    await asyncio.sleep(0.01)  # the first step done: waiting for the next
    task.wake()
    assert await ends(task.stop())
    assert not task.running


async def test_stop_cancels_a_step_in_progress() -> None:
    step = Steps()
    step.hold = asyncio.Event()
    task = periodic(step, 30)
    task.start()
    await asyncio.sleep(0.01)
    assert await ends(task.stop())
    assert step.runs == 1


async def test_start_is_idempotent_and_it_starts_again_after_a_stop() -> None:
    step = Steps()
    task = periodic(step, 30)
    await task.stop()  # never started: nothing to do
    task.start()
    task.start()
    await asyncio.sleep(0.01)
    assert step.runs == 1  # one task, not two
    await task.stop()
    task.start()
    await step.next_run()
    assert step.runs == 2
    await task.stop()
