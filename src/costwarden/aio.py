"""asyncio helpers shared by the gateway's background loops: a periodic task, waiting on an event
with a timeout, cancelling tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Any


async def wait_event(event: asyncio.Event, seconds: float) -> None:
    """Until `event` is set or `seconds` pass, whichever comes first.

    Not `asyncio.wait_for(event.wait(), seconds)`: on Python 3.11 that swallows a cancellation
    which lands in the same loop turn as the event is set, so a loop that waits this way and is
    cancelled by its `stop()` runs on, and `stop()` waits for ever (a gateway then ignores SIGTERM).
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel `tasks` and wait until each has ended, whatever it raised.

    Not `with suppress(CancelledError): await task`: that also swallows a cancellation of the
    caller itself (a shutdown deadline, a test's timeout), which then waits on as if not cancelled.
    """
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    if running:
        await asyncio.gather(*running, return_exceptions=True)


def describe_tasks(limit: int = 50, depth: int = 6) -> str:
    """The running loop's unfinished tasks with where each waits: what a stuck shutdown is waiting for.

    Each task's await chain is followed down to the innermost coroutine (`Task.get_stack` shows only
    the outermost frame of a suspended task, which says nothing about what it waits on); the last
    `depth` frames are shown, innermost last."""
    lines: list[str] = []
    current = asyncio.current_task()
    for task in list(asyncio.all_tasks())[:limit]:
        if task is current:
            continue
        frames = awaiting_frames(task.get_coro())
        shown = [f"{Path(f.f_code.co_filename).name}:{f.f_lineno} {f.f_code.co_name}" for f in frames[-depth:]]
        if len(frames) > depth:
            shown.insert(0, "...")
        lines.append(f"{task.get_name()}: {' -> '.join(shown) or 'not started'}")
    return "\n".join(lines)


def awaiting_frames(coro: object) -> list[FrameType]:
    """The frames of `coro` and of what it awaits, outermost first (coroutines, generators and
    async generators; the chain ends at a future or a suspended C-level awaitable)."""
    frames: list[FrameType] = []
    while coro is not None and len(frames) < 200:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        if frame is None:
            break
        frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or getattr(coro, "ag_await", None)
    return frames


class PeriodicTask:
    """Runs `step` in a task of its own: at once (or after `every_s` with `wait_first`), then every
    `every_s` seconds, or as soon as `wake()` is called, until `stop()`.

    A step that raises is logged to `log` (a WARNING: `failure`, the error) and the loop goes on at
    the next round. `stop()` ends the task whatever it is doing, also when a wake-up lands in the
    same loop turn (see `wait_event`). A `wake()` during a step runs the next step at once.
    """

    def __init__(
        self,
        name: str,
        step: Callable[[], Awaitable[object]],
        every_s: float,
        *,
        log: logging.Logger,
        failure: str,
        wait_first: bool = False,
    ) -> None:
        self._name = name
        self._step = step
        self._every_s = every_s
        self._log = log
        self._failure = failure
        self._wait_first = wait_first
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        """Start the task; does nothing while it runs."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    def wake(self) -> None:
        """Run the next step now, without waiting out the interval."""
        self._wake.set()

    async def stop(self) -> None:
        """Cancel the task (a step in progress too) and wait until it has ended."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        if self._wait_first:
            await self._wait()
        while True:
            try:
                await self._step()
            except Exception as exc:
                self._log.warning(
                    "%s, retried in %g s: %s: %s", self._failure, self._every_s, type(exc).__name__, exc
                )
            await self._wait()

    async def _wait(self) -> None:
        await wait_event(self._wake, self._every_s)
        self._wake.clear()
