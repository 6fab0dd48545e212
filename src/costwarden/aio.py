"""asyncio helpers shared by the gateway's background loops."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
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


def describe_tasks(limit: int = 50) -> str:
    """The running loop's unfinished tasks with where each waits: what a stuck shutdown is waiting for."""
    lines: list[str] = []
    current = asyncio.current_task()
    for task in list(asyncio.all_tasks())[:limit]:
        if task is current:
            continue
        frames = task.get_stack(limit=3)
        where = " <- ".join(f"{Path(f.f_code.co_filename).name}:{f.f_lineno} {f.f_code.co_name}" for f in frames)
        lines.append(f"{task.get_name()}: {where or 'not started'}")
    return "\n".join(lines)
