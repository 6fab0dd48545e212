"""Running totals of self-hosted compute for Prometheus: per deployment and profile (from config
only), the provisioned replica cost, its idle part and the GPU-seconds held, fed from the allocation
engine on a periodic tick. Money stays Decimal (exact to the nano-dollar per tick, as the engine
rounds); it becomes a float only at exposition.

Each tick accounts [mark, now - lag): the lag lets the requests overlapping the interval reach the
ledger (their read timeout plus two flushes), so busy time, hence idle, is read whole. Only the
replica holding the governor's lease counts (a sum over gateway replicas counts each second once);
the others move their mark on without counting, so a new leader starts where its clock is: a leader
change may leave out up to one tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

from costwarden.config.models import Config
from costwarden.domain.allocation import allocate
from costwarden.ports import SampleStore
from costwarden.services.allocation import AllocationQuery, gather, provisions

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ComputeTotals:
    compute_usd: Decimal = Decimal(0)  # replicas x price x time
    idle_usd: Decimal = Decimal(0)  # of which no request used
    gpu_seconds: Decimal = Decimal(0)  # accelerators x replicas x seconds held


class ComputeTally:
    def __init__(
        self,
        config: Config,
        lead: Callable[[float], Awaitable[bool]],
        samples: Callable[[], SampleStore | None],
        every_s: float,
        now: float,
    ) -> None:
        self._config = config
        self._found, _ = provisions(config)
        self._lead = lead
        self._samples = samples
        self._every_s = every_s
        flushes = 2 * config.storage.flush_interval_ms / 1000.0
        reads = max((d.timeouts.read for d in config.deployments if d.name in self._found), default=0.0)
        self.lag_s = reads + flushes + 1.0
        self.mark = now - self.lag_s  # accounted up to here
        self.totals = {(name, p.profile.name): ComputeTotals() for name, p in self._found.items()}
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return bool(self._found)

    async def tick(self, now: float) -> None:
        """Account the time since the mark (when leading). Raises what reading the ledger raises;
        the mark then stays, and the next tick accounts the interval."""
        end = now - self.lag_s
        if end <= self.mark:
            return
        if not await self._lead(now):
            self.mark = end
            return
        query = AllocationQuery(self.mark, end, ("deployment",), "separate")
        _, usages = await gather(self._config, query, self._found, self._samples())
        for usage in usages:
            result = allocate([usage], 1, "separate")
            totals = self.totals[(usage.deployment, usage.profile.name)]
            totals.compute_usd += result.provisioned_usd
            totals.idle_usd += result.idle_usd
            held = Decimal(usage.profile.accelerator_count * usage.replicas)
            totals.gpu_seconds += held * Decimal(repr(usage.window_seconds))
        self.mark = end

    def start(self) -> None:
        if self.active and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="costwarden-compute-tally")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._every_s)
            try:
                await self.tick(time.time())
            except Exception as exc:  # the ledger is down: the next tick accounts the interval
                log.warning("could not account compute cost for the metrics: %s", exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
