"""Raw-record retention (storage.retention): prune the ledger's raw records older than a number
of days, batch by batch, keeping the rollups. Used by `costwarden ledger prune` and, when
`raw_days` is set, by the leading gateway every `prune_every_seconds`."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from costwarden.aio import PeriodicTask
from costwarden.ports import RetentionStore

log = logging.getLogger(__name__)

DAY_SECONDS = 86_400


def cutoff(now: float, raw_days: float) -> float:
    """The start time (Unix seconds) before which raw records are pruned."""
    return now - raw_days * DAY_SECONDS


async def prune_ledger(store: RetentionStore, before: float, batch: int) -> int:
    """Delete every raw record started before `before`, `batch` at a time; returns how many."""
    total = 0
    while True:
        pruned = await store.prune(before, batch)
        total += pruned
        if pruned < batch:
            return total


class RetentionLoop:
    """The gateway's own pruning: every `every_s` seconds, the replica holding the governor's
    lease (`lead`, renewed as the governor does) prunes raw records started more than `raw_days`
    days ago. A failed prune (the database is down) waits for the next round."""

    def __init__(
        self,
        store: RetentionStore,
        lead: Callable[[float], Awaitable[bool]],
        raw_days: float,
        batch: int,
        every_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store, self._lead, self._clock = store, lead, clock
        self._raw_days, self._batch = raw_days, batch
        self._task = PeriodicTask("costwarden-retention", self.tick, every_s, log=log, failure="ledger prune failed")
        self.pruned = 0

    async def tick(self) -> int:
        """One round: prune if this replica leads; returns how many records went."""
        now = self._clock()
        if not await self._lead(now):
            return 0
        pruned = await prune_ledger(self._store, cutoff(now, self._raw_days), self._batch)
        self.pruned += pruned
        if pruned:
            log.info("pruned %d raw ledger records older than %g days", pruned, self._raw_days)
        return pruned

    def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()
