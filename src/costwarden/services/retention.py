"""Retention: prune the ledger's raw records older than a number of days, batch by batch, keeping
the rollups (storage.retention: `costwarden ledger prune` and, when `raw_days` is set, the leading
gateway every `prune_every_seconds`); and the batch queue's finished batches, their jobs and files
(`batch.retention_days`: `costwarden queue prune` and the leading gateway). Neither touches the other."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from costwarden.aio import PeriodicTask
from costwarden.domain.batch_files import Pruned
from costwarden.ports import QueueRetention, RetentionStore

log = logging.getLogger(__name__)

DAY_SECONDS = 86_400


def cutoff(now: float, days: float) -> float:
    """The time (Unix seconds) `days` before `now`: what started (or finished) before it is pruned."""
    return now - days * DAY_SECONDS


async def prune_ledger(store: RetentionStore, before: float, batch: int) -> int:
    """Delete every raw record started before `before`, `batch` at a time; returns how many."""
    total = 0
    while True:
        pruned = await store.prune(before, batch)
        total += pruned
        if pruned < batch:
            return total


async def prune_queue(queue: QueueRetention, before: float, batch: int) -> Pruned:
    """Delete the batch queue's batches finished before `before` with their jobs and files, and the
    uploads made before it that no kept batch was created from, `batch` rows a transaction."""
    total = Pruned()
    while (step := await queue.prune_finished(before, batch)).total:
        total += step
    return total


class RetentionLoop:
    """The gateway's own pruning: every `every_s` seconds, the replica holding the governor's
    lease (`lead`, renewed as the governor does) calls `prune` with the time `days` days ago, which
    returns how many rows went (`what` names them in the log). A failed prune (the database is down)
    waits for the next round."""

    def __init__(
        self,
        prune: Callable[[float], Awaitable[int]],
        lead: Callable[[float], Awaitable[bool]],
        days: float,
        every_s: float,
        what: str = "raw ledger records",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._prune, self._lead, self._clock = prune, lead, clock
        self._days, self._what = days, what
        failure = f"pruning {what} failed"
        self._task = PeriodicTask(f"costwarden-retention ({what})", self.tick, every_s, log=log, failure=failure)
        self.pruned = 0

    async def tick(self) -> int:
        """One round: prune if this replica leads; returns how many rows went."""
        now = self._clock()
        if not await self._lead(now):
            return 0
        pruned = await self._prune(cutoff(now, self._days))
        self.pruned += pruned
        if pruned:
            log.info("pruned %d %s older than %g days", pruned, self._what, self._days)
        return pruned

    def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()
