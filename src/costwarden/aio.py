"""asyncio helpers shared by the gateway's background loops: a periodic task, waiting on an event
with a timeout, cancelling tasks, a reply timeout that does not count a stalled loop's time, and
importing aiohttp off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import sys
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


async def load_aiohttp() -> None:
    """Import aiohttp in a worker thread (once; then at once): 150-250 ms of imports on an idle machine,
    more on a loaded one, that on the event loop would stall every request in flight (a fail-closed
    budget's Redis admissions then time out, and a burst answers 503). A gateway imports it when it first
    sends through it (the asgi engine at start, a streamed upload, an alert, a job callback); the fast
    engine without those never does (upstream/lazy_session.py)."""
    module = sys.modules.get("aiohttp")
    if module is not None and not getattr(module.__spec__, "_initializing", False):
        return
    await asyncio.to_thread(importlib.import_module, "aiohttp")


class ReplyTimeout:
    """`async with ReplyTimeout(loop, seconds):` like `asyncio.timeout(seconds)`, for waiting on a peer's
    reply, except that time the event loop itself was stalled (an import, a GC pause, a CPU-starved
    process) is not counted against the peer.

    With `asyncio.timeout`, when the loop is busy past the deadline, the reply that arrived meanwhile
    and the timer become due in the same turn, and the timer wins: the task is cancelled with its
    reply in hand, and a healthy peer looks unreachable (a fail-closed budget then refuses with 503
    under a burst). Here a timer that fires `STALL_S` or more late (the loop was stalled at the
    deadline) grants the peer that lateness once more, in which the loop reads what arrived; a peer
    that never answers still times out, after at most twice `seconds` (when the loop stalled too).
    """

    STALL_S = 0.005

    __slots__ = ("_extended", "_handle", "_loop", "_seconds", "_timeout", "_when")

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        self._loop = loop
        self._seconds = seconds
        self._timeout = asyncio.timeout(None)
        self._handle: asyncio.TimerHandle | None = None
        self._when = 0.0
        self._extended = False

    async def __aenter__(self) -> ReplyTimeout:
        await self._timeout.__aenter__()
        self._when = when = self._loop.time() + self._seconds
        self._handle = self._loop.call_at(when, self._fire)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._handle is not None:
            self._handle.cancel()
        await self._timeout.__aexit__(*exc_info)

    def _fire(self) -> None:
        now = self._loop.time()
        late = now - self._when
        if late >= self.STALL_S and not self._extended:
            self._extended = True
            self._when = now + min(late, self._seconds)
            self._handle = self._loop.call_at(self._when, self._fire)
            return
        self._handle = None
        self._timeout.reschedule(now)  # expires: cancels the waiting task at the next turn


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
