"""A stop taken step by step: each step named, the ones that lose nothing when cut short bounded,
and a stop that takes long says where it is and what every task waits on (a stop that hangs is
otherwise silent until the SIGKILL that follows SIGTERM)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from costwarden.aio import describe_tasks


@dataclass(frozen=True, slots=True)
class StopStep:
    name: str  # what the logs call it: "the lease", "the recorder's last flush"
    run: Callable[[], Awaitable[object]]
    bounded: bool = True  # False: it holds records or jobs, and is never cut short


async def stop_in_steps(
    steps: Sequence[StopStep], *, step_limit_s: float, warn_after_s: float, log: logging.Logger
) -> None:
    """Run `steps` in order. A bounded step still running after `step_limit_s` is cancelled, logged,
    and the stop goes on; after `warn_after_s` in all, the step under way and every task's await
    chain are logged once."""
    at: list[str] = ["before the first step"]

    def warn() -> None:
        log.warning("stopping takes over %g s, at %s; waiting on:\n%s", warn_after_s, at[0], describe_tasks())

    warning = asyncio.get_running_loop().call_later(warn_after_s, warn)
    try:
        for step in steps:
            at[0] = step.name
            if not step.bounded:
                await step.run()
                continue
            try:
                async with asyncio.timeout(step_limit_s):
                    await step.run()
            except TimeoutError:
                log.warning("stopping: %s did not end within %g s; cut short, going on", step.name, step_limit_s)
    finally:
        warning.cancel()
