"""Running totals of self-hosted compute for Prometheus: per deployment and profile (from config
only), the provisioned replica cost, its idle part and the GPU-seconds held, fed from the allocation
engine on a periodic tick. Money stays Decimal (exact to the nano-dollar per tick, as the engine
rounds); it becomes a float only at exposition.

Each tick accounts [mark, now - lag): the lag lets the requests overlapping the interval reach the
ledger (their read timeout plus two flushes), so busy time, hence idle, is read whole. Only the
replica holding the governor's lease counts (a sum over gateway replicas counts each second once);
the others move their mark on without counting, so a new leader starts where its clock is: a leader
change may leave out up to one tick.

Deployments whose replicas Prometheus counts (`replicas: {prometheus: ...}`) each keep their own mark:
a tick runs the same range query as the allocation over [mark, end) and adds Σ replicas × step ×
price. Prometheus down or the PromQL refused: nothing is counted and the mark stays (the next tick
retries the whole stretch). Grid steps Prometheus has no count for (gaps) are not counted, never
filled in: they are logged and added to `uncounted_seconds`, and the mark moves past them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

from costwarden.aio import PeriodicTask
from costwarden.collectors.prometheus import QueryFailed
from costwarden.config.compute import PrometheusReplicas
from costwarden.config.models import Config
from costwarden.domain.allocation import allocate
from costwarden.domain.allocation_input import Provision
from costwarden.ports import SampleStore
from costwarden.services.allocation import AllocationQuery, gather, provisions
from costwarden.services.replicas import priced, prometheus_source, replica_window

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ComputeTotals:
    compute_usd: Decimal = Decimal(0)  # replicas x price x time
    idle_usd: Decimal = Decimal(0)  # of which no request used
    gpu_seconds: Decimal = Decimal(0)  # accelerators x replicas x seconds held
    uncounted_seconds: Decimal = Decimal(0)  # Prometheus-counted replicas: seconds with no count (gaps)
    replicas: Decimal | None = None  # Prometheus-counted replicas: the latest count this (leading) replica read


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
        self._source = prometheus_source(config)
        # Prometheus-counted deployments (a profile and a collector's URL): the spec and the profile as priced
        self._counted: dict[str, tuple[PrometheusReplicas, Provision]] = {}
        if self._source is not None:
            for dep in config.deployments:
                compute = dep.compute
                if compute is None or not isinstance(compute.replicas, PrometheusReplicas):
                    continue
                profile = priced(config, compute)
                if profile is not None:
                    self._counted[dep.name] = (compute.replicas, Provision(profile, 1))
        self._lead = lead
        self._samples = samples
        flushes = 2 * config.storage.flush_interval_ms / 1000.0
        known = self._found.keys() | self._counted.keys()
        reads = max((d.timeouts.read for d in config.deployments if d.name in known), default=0.0)
        self.lag_s = reads + flushes + 1.0
        self.mark = now - self.lag_s  # accounted up to here
        self.marks = {name: round(self.mark, 3) for name in self._counted}  # per Prometheus-counted deployment
        self.totals = {(name, p.profile.name): ComputeTotals() for name, p in self._found.items()}
        self.totals.update({(name, p.profile.name): ComputeTotals() for name, (_, p) in self._counted.items()})
        # The ledger down: the next tick accounts the interval.
        failure = "could not account compute cost for the metrics"
        self._task = PeriodicTask(
            "costwarden-compute-tally", self._round, every_s, log=log, failure=failure, wait_first=True
        )

    @property
    def active(self) -> bool:
        return bool(self._found or self._counted)

    async def tick(self, now: float) -> None:
        """Account the time since the mark (when leading). Raises what reading the ledger raises;
        the mark then stays, and the next tick accounts the interval."""
        end = now - self.lag_s
        if end <= self.mark:
            return
        if not await self._lead(now):
            self.mark = end
            self.marks = dict.fromkeys(self.marks, round(end, 3))
            return
        await self._tick_fixed(end)
        for name in self._counted:
            await self._tick_counted(name, round(end, 3))

    async def _tick_fixed(self, end: float) -> None:
        if not self._found:
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

    async def _tick_counted(self, name: str, end: float) -> None:
        start = self.marks[name]
        if end <= start or self._source is None:
            return
        spec, priced = self._counted[name]
        try:
            seen, step, start = await replica_window(self._source, spec, start, end)
        except QueryFailed as exc:  # the mark stays: the next tick asks for the whole stretch again
            log.warning("%s: replica count unknown (%s); compute cost not counted yet, retried next tick", name, exc)
            return
        totals = self.totals[(name, priced.profile.name)]
        if seen.covered_seconds:
            provision = Provision(priced.profile, max(seen.peak, 1), seen.replica_seconds)
            query = AllocationQuery(start, end, ("deployment",), "separate")
            _, usages = await gather(self._config, query, {name: provision}, self._samples())
            for usage in usages:
                result = allocate([usage], 1, "separate")
                totals.compute_usd += result.provisioned_usd
                totals.idle_usd += result.idle_usd
            totals.gpu_seconds += priced.profile.accelerator_count * seen.replica_seconds
        if seen.last is not None:
            totals.replicas = seen.last
        uncounted = Decimal(repr(end)) - Decimal(repr(start)) - seen.covered_seconds
        if uncounted > 0:
            totals.uncounted_seconds += uncounted
            log.warning("%s: %s step(s) of %g s without a replica count in Prometheus; %s s not counted",
                        name, seen.gaps, step, uncounted)  # fmt: skip
        self.marks[name] = end

    def start(self) -> None:
        if self.active:
            self._task.start()

    async def _round(self) -> None:
        await self.tick(time.time())

    async def stop(self) -> None:
        await self._task.stop()

