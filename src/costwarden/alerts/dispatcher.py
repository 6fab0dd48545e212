"""The alert dispatcher: `submit` hands fired and resolved alerts over without waiting; one lane per
destination (the store, each sink) saves or sends them in the background, so a slow or failing sink
delays and fails only itself. Lanes are bounded and drop their oldest alerts when full."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable

from costwarden.domain.alert import Alert
from costwarden.ports import AlertSink, AlertStore

log = logging.getLogger(__name__)


@runtime_checkable
class Adopting(Protocol):
    """A sink that keeps firing alerts and re-announces them (Alertmanager)."""

    def adopt(self, alerts: Sequence[Alert]) -> None: ...

    def disown(self) -> None: ...


class Lane:
    """A bounded queue of alerts and the task that delivers them in batches to one destination."""

    def __init__(
        self, name: str, deliver: Callable[[Sequence[Alert]], Awaitable[object]], capacity: int, batch_max: int
    ) -> None:
        self.name = name
        self.sent = self.failed = self.dropped = 0
        self._deliver = deliver
        self._capacity = capacity
        self._batch_max = batch_max
        self._queue: deque[Alert] = deque()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._in_flight = 0
        self.task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._queue) + self._in_flight

    def put(self, alerts: Sequence[Alert]) -> None:
        if self._closing:
            self.dropped += len(alerts)
            return
        for alert in alerts:
            if len(self._queue) >= self._capacity:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(alert)
        self._wakeup.set()

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run(), name=f"alerts-{self.name}")

    def close(self) -> None:
        """Deliver what is queued, then end."""
        self._closing = True
        self._wakeup.set()

    def abandon(self) -> None:
        """Count what was never delivered as dropped (after a drain that timed out)."""
        self.dropped += len(self._queue)
        self._queue.clear()

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            count = min(len(self._queue), self._batch_max)
            batch = [self._queue.popleft() for _ in range(count)]
            self._in_flight = count
            try:
                await self._deliver(batch)
                self.sent += count
            except asyncio.CancelledError:
                self.failed += count
                raise
            except Exception as exc:
                self.failed += count
                log.warning("alert %s: %d alerts not delivered: %s", self.name, count, str(exc) or type(exc).__name__)
            finally:
                self._in_flight = 0


class AlertDispatcher:
    """Owns the sinks (it closes them). Counters, in alerts: `sent` and `failed` summed over the
    sinks (an alert sent to two sinks counts twice), `dropped` on overflow or shutdown, and
    `store_failed`. Call `submit` from the event loop's thread."""

    def __init__(
        self, sinks: Sequence[AlertSink], store: AlertStore | None, capacity: int = 10_000, batch_max: int = 100
    ) -> None:
        self.sinks = tuple(sinks)
        names = [sink.name for sink in self.sinks]
        if len(set(names)) != len(names) or "store" in names:
            raise ValueError(f"alert sink names must be unique and not 'store': {names}")
        self._store_lane = None if store is None else Lane("store", store.save_alerts, capacity, batch_max)
        self._sink_lanes = tuple(Lane(sink.name, sink.send, capacity, batch_max) for sink in self.sinks)
        self._lanes = (*self._sink_lanes, *((self._store_lane,) if self._store_lane else ()))

    @property
    def sent(self) -> int:
        return sum(lane.sent for lane in self._sink_lanes)

    @property
    def failed(self) -> int:
        return sum(lane.failed for lane in self._sink_lanes)

    @property
    def dropped(self) -> int:
        return sum(lane.dropped for lane in self._lanes)

    @property
    def store_failed(self) -> int:
        return 0 if self._store_lane is None else self._store_lane.failed

    @property
    def pending(self) -> int:
        return sum(lane.pending for lane in self._lanes)

    def by_sink(self) -> dict[str, tuple[int, int, int]]:
        """(sent, failed, dropped) per lane name, the store's included."""
        return {lane.name: (lane.sent, lane.failed, lane.dropped) for lane in self._lanes}

    def start(self) -> None:
        for lane in self._lanes:
            lane.start()

    def submit(self, alerts: Sequence[Alert]) -> None:
        """Queue alerts that fired or resolved. Never blocks, never raises."""
        if not alerts:
            return
        try:
            for lane in self._lanes:
                lane.put(alerts)
        except Exception:  # a bug here must not reach the request path
            log.exception("alert dispatcher: submit failed")

    def record(self, alerts: Sequence[Alert]) -> None:
        """Keep alerts in the store without notifying any sink (shadow mode). Never blocks or raises."""
        if alerts and self._store_lane is not None:
            try:
                self._store_lane.put(alerts)
            except Exception:
                log.exception("alert dispatcher: record failed")

    def adopt(self, active: Sequence[Alert]) -> None:
        """This replica took the lead (or restarted leading): hand the firing alerts of the store to
        the sinks that re-announce them. Nothing is sent as new."""
        for sink in self.sinks:
            if isinstance(sink, Adopting):
                sink.adopt([a for a in active if a.firing])

    def disown(self) -> None:
        """This replica lost the lead: its sinks stop re-announcing; the new leader does it."""
        for sink in self.sinks:
            if isinstance(sink, Adopting):
                sink.disown()

    async def stop(self, grace_s: float = 10.0) -> None:
        """Deliver what is queued for at most `grace_s` seconds, drop the rest, close the sinks."""
        for lane in self._lanes:
            lane.close()
        tasks = [lane.task for lane in self._lanes if lane.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for lane in self._lanes:
            lane.abandon()
        for sink in self.sinks:
            try:
                await sink.close()
            except Exception:
                log.exception("alert sink %s: close failed", sink.name)
