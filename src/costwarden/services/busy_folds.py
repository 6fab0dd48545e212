"""Folds the ledger's request intervals per closed hour (storage/busy_sql.py), so that allocation over
a long window reads a few rows per hour instead of every request interval.

The gateway holding the governor's lease folds every `every_s`: the hours closed since the last one
folded (an hour is closed once the longest read timeout, two ledger flushes and a minute have passed
after its end), back to the oldest ledger record on the first run (the back-fill of an existing
ledger), a day per transaction. Each round it also refolds the folded hours whose record count in
the rollups changed since their fold (storage/busy_check.py), so a record that reached the ledger
late (a spool replayed after an outage, days later) is counted by the next round; and once an hour
it drops the folds past the ledger's retention. A fold replaces its hours' rows: folding again
changes nothing else.

Allocation reads the folded hours in the middle of its window that are folded for every deployment
it allocates, with the same horizon, and raw intervals for the rest (`folded_stretch`)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence

from costwarden.aio import cancel_and_wait
from costwarden.config.models import Config
from costwarden.domain.busy_fold import HOUR, MIN_HORIZON_S
from costwarden.services.retention import cutoff
from costwarden.storage.busy_check import refold_ranges
from costwarden.storage.busy_sql import BusyFolds

log = logging.getLogger(__name__)
FOLDABLE = frozenset({"team", "deployment"})  # groupings read from the folds; others sweep raw intervals
CHUNK_S = 86400  # hours per fold transaction


def horizon(config: Config) -> float:
    """How long after its start a request counts (busy.request_interval): at least ten minutes, more
    with a longer read timeout. The same on every gateway with the same config."""
    return max([MIN_HORIZON_S, *(d.timeouts.read for d in config.deployments)])


def folds_of(config: Config) -> BusyFolds | None:
    url = config.storage.ledger
    return BusyFolds(url) if url.startswith(("sqlite:///", "postgres")) else None


def compute_deployments(config: Config) -> list[str]:
    return sorted(d.name for d in config.deployments if d.compute is not None)


async def folded_stretch(
    folds: BusyFolds, start: float, end: float, deployments: Sequence[str], horizon_s: float
) -> tuple[int, int] | None:
    """[a, b): the longest run of whole hours inside the window (after its start) folded for every
    deployment with this horizon (the earliest of equals); None when no hour is."""
    first = math.floor(start / HOUR) * HOUR + HOUR
    last = math.floor(end / HOUR) * HOUR
    if last <= first or not deployments:
        return None
    found = await folds.folded_hours(first, last, deployments)
    best: tuple[int, int] | None = None
    run = None
    for hour in range(first, last + HOUR, HOUR):
        folded = hour < last and all(found.get(d, {}).get(hour) == horizon_s for d in deployments)
        if folded and run is None:
            run = hour
        elif not folded and run is not None:
            if best is None or hour - run > best[1] - best[0]:
                best = (run, hour)
            run = None
    return best


class BusyFolder:
    def __init__(self, config: Config, lead: Callable[[float], Awaitable[bool]], every_s: float = 60.0) -> None:
        self.folds = folds_of(config)
        self.deployments = compute_deployments(config)
        self.horizon_s = horizon(config)
        flushes = 2 * config.storage.flush_interval_ms / 1000.0
        self.lag_s = max((d.timeouts.read for d in config.deployments), default=0.0) + flushes + 60.0
        self.raw_days = config.storage.retention.raw_days
        self._lead = lead
        self._every_s = every_s
        self._pruned = -math.inf
        self._task: asyncio.Task[None] | None = None

    def closed(self, now: float) -> int:
        """The end of the last closed hour."""
        return math.floor((now - self.lag_s) / HOUR) * HOUR

    async def fold(self, now: float) -> int:
        """Refold the folded hours a record reached since their fold, fold the hours closed by `now`
        that are not folded yet, and (once an hour) drop the folds past the ledger's retention; the
        rows written."""
        folds = self.folds
        if folds is None or not self.deployments:
            return 0
        end = self.closed(now)
        last = await folds.last_folded(self.deployments, self.horizon_s)
        written = 0
        if last is None:
            oldest = await folds.oldest_record()
            begin = end if oldest is None else math.floor((oldest) / HOUR) * HOUR
        else:
            begin = last + HOUR
            stale = await folds.stale(self.deployments, self.horizon_s)
            for a, b in refold_ranges(stale, self.horizon_s):
                written += await self._fold(a, min(b, begin))
        written += await self._fold(begin, end)
        if now - self._pruned >= HOUR:
            await self.prune(now)
            self._pruned = now
        return written

    async def _fold(self, begin: int, end: int, done: Callable[[int], None] | None = None) -> int:
        assert self.folds is not None
        written = 0
        for first in range(begin, end, CHUNK_S):
            last = min(first + CHUNK_S, end)
            written += await self.folds.fold(first, last, self.deployments, self.horizon_s)
            if done is not None:
                done((last - first) // HOUR)
        return written

    async def refold(self, since: float, now: float, done: Callable[[int], None] | None = None) -> int:
        """Fold again every closed hour from the one holding `since` (`costwarden compute refold`);
        `done` is called with the hours of each day folded. The rows written."""
        if self.folds is None or not self.deployments:
            return 0
        return await self._fold(math.floor(since / HOUR) * HOUR, self.closed(now), done)

    async def prune(self, now: float) -> int:
        """Drop the folds of the hours wholly before the ledger's retention cutoff (storage.retention.
        raw_days), as raw records are pruned; the hours dropped (per deployment)."""
        if self.folds is None or self.raw_days is None:
            return 0
        return await self.folds.prune(math.floor(cutoff(now, self.raw_days) / HOUR) * HOUR)

    def start(self) -> None:
        if self.folds is not None and self.deployments and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="costwarden-busy-folds")

    async def _loop(self) -> None:
        while True:
            try:
                now = time.time()
                if await self._lead(now):
                    await self.fold(now)
            except Exception as exc:  # the ledger is down: the next round folds what is left
                log.warning("could not fold request intervals for allocation: %s", exc)
            await asyncio.sleep(self._every_s)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
