"""Whether the ledger database answers, kept fresh by a background ping, so `/readyz` reads a value
instead of waiting on the database (issue 14: probes under 10 ms while reports and scrapes run).

A ping every `every_s` seconds, each given `stale_after_s` to answer. The ledger counts as
answering while the last ping succeeded and one succeeded within the last `stale_after_s`: a
database that refuses turns it not-ready at the next ping (within `every_s`), one that hangs
within `stale_after_s`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from costwarden.aio import PeriodicTask

log = logging.getLogger(__name__)

PING_EVERY_S = 1.0
STALE_AFTER_S = 3.0


class LedgerReadiness:
    def __init__(
        self,
        ping: Callable[[], Awaitable[bool]],
        every_s: float = PING_EVERY_S,
        stale_after_s: float = STALE_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ping, self._clock = ping, clock
        self.stale_after_s = stale_after_s
        self._answered = False  # the last ping's result
        self._answered_at: float | None = None  # when a ping last succeeded (clock seconds)
        self._task = PeriodicTask(
            "costwarden-ledger-ping", self.check, every_s, log=log, failure="ledger ping failed", wait_first=True
        )

    async def check(self) -> bool:
        """Ping now; a ping that raises or takes longer than `stale_after_s` counts as failed."""
        try:
            async with asyncio.timeout(self.stale_after_s):
                answered = await self._ping()
        except (TimeoutError, OSError):
            answered = False
        self._answered = answered
        if answered:
            self._answered_at = self._clock()
        return answered

    @property
    def answering(self) -> bool:
        """The last ping succeeded, and not longer than `stale_after_s` ago (no I/O)."""
        at = self._answered_at
        return self._answered and at is not None and self._clock() - at <= self.stale_after_s

    async def start(self) -> None:
        """One ping before the first probe reads the result, then one every `every_s` seconds."""
        await self.check()
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()
