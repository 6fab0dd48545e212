"""Folds the ledger's request intervals per closed hour (storage/busy_sql.py), so that allocation over
a long window reads a few rows per hour instead of every request interval.

The gateway holding the governor's lease folds every `every_s`: the hours closed since the last one
folded (an hour is closed once the longest read timeout, two ledger flushes and a minute have passed
after its end), back to the oldest ledger record on the first run (the back-fill of an existing
ledger), a day per transaction. Once an hour it folds the last `REFOLD_S` again, so a record that
reached the ledger late (a spool replayed after an outage, a stream that ran past the lag) is
counted. A fold replaces its hours' rows: folding again changes nothing else.

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
from costwarden.storage.busy_sql import BusyFolds

log = logging.getLogger(__name__)
FOLDABLE = frozenset({"team", "deployment"})  # groupings read from the folds; others sweep raw intervals
CHUNK_S = 86400  # hours per fold transaction
REFOLD_S = 86400  # folded again once an hour, for records that arrived late


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
        self._lead = lead
        self._every_s = every_s
        self._refolded = time.time()  # the first refold an hour after start, not while it starts
        self._task: asyncio.Task[None] | None = None

    async def fold(self, now: float) -> int:
        """Fold the hours closed by `now` that are not folded yet (and, once an hour, the last day
        again); the rows written."""
        folds = self.folds
        if folds is None or not self.deployments:
            return 0
        end = math.floor((now - self.lag_s) / HOUR) * HOUR
        last = await folds.last_folded(self.deployments, self.horizon_s)
        if last is None:
            oldest = await folds.oldest_record()
            begin = end if oldest is None else math.floor((oldest) / HOUR) * HOUR
        else:
            begin = last + HOUR
        if now - self._refolded >= HOUR:
            begin, self._refolded = min(begin, end - REFOLD_S), now
        written = 0
        for first in range(begin, end, CHUNK_S):
            written += await folds.fold(first, min(first + CHUNK_S, end), self.deployments, self.horizon_s)
        return written

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
