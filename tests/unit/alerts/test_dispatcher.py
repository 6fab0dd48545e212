"""The dispatcher: submit never blocks, each sink has its own lane, overflow drops the oldest,
stop drains within its grace period. Fake sinks and store."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from costwarden.alerts.dispatcher import AlertDispatcher
from costwarden.domain.alert import Alert
from tests.unit.alerts.sample import T0, budget_alert, resolved


class Recording:
    def __init__(self, name: str) -> None:
        self.name = name
        self.batches: list[list[Alert]] = []
        self.closed = False

    async def send(self, alerts: Sequence[Alert]) -> None:
        self.batches.append(list(alerts))

    async def close(self) -> None:
        self.closed = True

    @property
    def alerts(self) -> list[Alert]:
        return [a for batch in self.batches for a in batch]


class Failing(Recording):
    async def send(self, alerts: Sequence[Alert]) -> None:
        raise RuntimeError("receiver is down")


class Stuck(Recording):
    """Never answers until released."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.release = asyncio.Event()

    async def send(self, alerts: Sequence[Alert]) -> None:
        await self.release.wait()
        self.batches.append(list(alerts))


class Adopting(Recording):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.adopted: list[Alert] = []

    def adopt(self, alerts: Sequence[Alert]) -> None:
        self.adopted.extend(alerts)

    def disown(self) -> None:
        self.adopted.clear()


class MemoryStore:
    def __init__(self) -> None:
        self.saved: list[Alert] = []

    async def save_alerts(self, alerts: Sequence[Alert]) -> None:
        self.saved.extend(alerts)

    async def list_alerts(self, active_only: bool, limit: int) -> list[Alert]:
        return self.saved[:limit]


async def settle(dispatcher: AlertDispatcher) -> None:
    for _ in range(100):
        if dispatcher.pending == 0:
            return
        await asyncio.sleep(0.001)


async def test_every_sink_and_the_store_get_every_alert() -> None:
    one, two, store = Recording("one"), Recording("two"), MemoryStore()
    dispatcher = AlertDispatcher([one, two], store)
    dispatcher.start()
    fired = [budget_alert("a"), budget_alert("b")]
    dispatcher.submit(fired)
    dispatcher.submit([resolved(fired[0])])
    dispatcher.submit([])
    await settle(dispatcher)
    assert one.alerts == two.alerts == store.saved == [*fired, resolved(fired[0])]
    assert (dispatcher.sent, dispatcher.failed, dispatcher.dropped, dispatcher.store_failed) == (6, 0, 0, 0)
    await dispatcher.stop()
    assert one.closed and two.closed


async def test_a_failing_or_stuck_sink_does_not_hold_back_the_others() -> None:
    good, bad, stuck = Recording("good"), Failing("bad"), Stuck("stuck")
    dispatcher = AlertDispatcher([bad, stuck, good], None)
    dispatcher.start()
    for i in range(3):
        dispatcher.submit([budget_alert(f"b{i}", T0 + i)])
        await asyncio.sleep(0.01)
    assert len(good.alerts) == 3 and not stuck.alerts
    assert dispatcher.by_sink()["bad"][1] == 3 and dispatcher.by_sink()["good"][0] == 3
    stuck.release.set()
    await settle(dispatcher)
    assert len(stuck.alerts) == 3
    assert (dispatcher.sent, dispatcher.failed) == (6, 3)
    await dispatcher.stop()


async def test_submit_never_blocks_and_drops_the_oldest_when_full() -> None:
    stuck = Stuck("stuck")
    dispatcher = AlertDispatcher([stuck], None, capacity=5, batch_max=2)
    dispatcher.start()
    alerts = [budget_alert(f"b{i}", T0 + i) for i in range(12)]
    dispatcher.submit(alerts[:2])
    await asyncio.sleep(0.01)  # the lane took the first two and is stuck sending them
    loop = asyncio.get_running_loop()
    began = loop.time()
    for alert in alerts[2:]:
        dispatcher.submit([alert])
    assert loop.time() - began < 0.05
    assert dispatcher.dropped == 5  # 10 queued behind a capacity of 5
    stuck.release.set()
    await settle(dispatcher)
    assert stuck.alerts == alerts[:2] + alerts[7:]
    await dispatcher.stop()


async def test_stop_drains_within_its_grace_and_counts_the_rest() -> None:
    stuck = Stuck("stuck")
    dispatcher = AlertDispatcher([stuck], None, batch_max=1)
    dispatcher.start()
    dispatcher.submit([budget_alert(f"b{i}", T0 + i) for i in range(3)])
    await dispatcher.stop(grace_s=0.05)
    assert (dispatcher.sent, dispatcher.failed, dispatcher.dropped) == (0, 1, 2)
    assert stuck.closed
    dispatcher.submit([budget_alert()])  # after stop: counted, not raised
    assert dispatcher.dropped == 3


async def test_stop_delivers_what_is_queued() -> None:
    sink, store = Recording("one"), MemoryStore()
    dispatcher = AlertDispatcher([sink], store)
    dispatcher.submit([budget_alert("early")])  # before start: kept
    dispatcher.start()
    dispatcher.submit([budget_alert("late")])
    await dispatcher.stop()
    assert len(sink.alerts) == len(store.saved) == 2 and dispatcher.pending == 0


async def test_a_failing_store_is_counted_and_sinks_still_send() -> None:
    class BrokenStore(MemoryStore):
        async def save_alerts(self, alerts: Sequence[Alert]) -> None:
            raise OSError("disk full")

    sink = Recording("one")
    dispatcher = AlertDispatcher([sink], BrokenStore())
    dispatcher.start()
    dispatcher.submit([budget_alert()])
    await dispatcher.stop()
    assert dispatcher.store_failed == 1 and dispatcher.sent == 1 and dispatcher.failed == 0


async def test_adopt_reaches_only_sinks_that_re_announce() -> None:
    plain, adopting = Recording("plain"), Adopting("am")
    dispatcher = AlertDispatcher([plain, adopting], None)
    active = budget_alert("a")
    dispatcher.adopt([active, resolved(budget_alert("b"))])
    assert adopting.adopted == [active] and not plain.batches
    dispatcher.disown()  # another replica leads now: it re-announces them
    assert adopting.adopted == [] and not plain.batches
    await dispatcher.stop()


def test_sink_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        AlertDispatcher([Recording("x"), Recording("x")], None)
    with pytest.raises(ValueError, match="unique"):
        AlertDispatcher([Recording("store")], None)
