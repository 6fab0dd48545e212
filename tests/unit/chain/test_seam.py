"""The chain's seam: a stage answers with a `Reply`, settle runs before the last byte and finish
after it, one record whatever happens, and a budget action that every use handles."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from costwarden.chain.attribute import Attribute
from costwarden.chain.authenticate import Authenticate
from costwarden.chain.exchange import Exchange
from costwarden.chain.meter import Meter
from costwarden.chain.order import Chain
from costwarden.chain.policy import refuses
from costwarden.chain.record import Record
from costwarden.chain.route import RouteStage
from costwarden.chain.stage import Channel, PassStage, Reply, Settle, Stage
from costwarden.chain.target import RouteTable
from costwarden.config.governance import default_fail_mode
from costwarden.domain.budget import Action, Amount, Budget, BudgetScope, BudgetState, FailMode, admit
from costwarden.domain.record import Outcome, Protocol
from costwarden.domain.usage import Usage
from costwarden.domain.window import Unit, Window
from tests.unit.chain.fakes import FakeChannel, FakeForward, FakeKeys, MemorySink, Spy
from tests.unit.chain.test_order import CHAT, CHAT_BODY, DEPLOYMENTS, KEYS, bearer


class Answering(PassStage):
    """Answers every request itself, as a cache hit would, after route chose the deployment."""

    name = "answering"

    async def enter(self, exchange: Exchange) -> Reply | None:
        assert exchange.route is not None
        return Reply(200, b'{"cached": true}', ((b"content-type", b"application/json"), (b"x-hit", b"1")))


class Watcher(PassStage):
    """Notes whether the client had the last byte when settle and finish ran."""

    name = "watcher"

    def __init__(self, channel: FakeChannel, seen: list[str]) -> None:
        self._channel = channel
        self._seen = seen

    async def settle(self, exchange: Exchange) -> None:
        self._seen.append(f"settle:last-byte-sent={self._channel.finished}")

    async def finish(self, exchange: Exchange) -> None:
        self._seen.append(f"finish:last-byte-sent={self._channel.finished}")


def chat_exchange() -> Exchange:
    return Exchange("req-1", "POST", CHAT, b"", [bearer("cw_alice_s")], CHAT_BODY, Protocol.OPENAI, CHAT)


def stages(log: list[str], *extra: Stage) -> list[Stage]:
    real: list[Stage] = [Authenticate(FakeKeys(KEYS)), Attribute(), RouteStage(RouteTable(DEPLOYMENTS), 0), *extra]
    return [Spy(s, log) for s in real]


async def test_a_reply_from_enter_short_circuits_the_chain() -> None:
    log: list[str] = []
    sink = MemorySink()
    forward = FakeForward(usage=Usage(input_tokens=1000, output_tokens=500))
    later = PassStage()
    later.name = "later"
    chain = Chain(stages(log, Answering(), later), forward, [Spy(Meter(), log), Spy(Record(sink), log)])
    channel = FakeChannel()
    await chain.run(chat_exchange(), channel)
    assert forward.calls == 0
    assert [e for e in log if e.startswith("enter:")] == [
        "enter:authenticate", "enter:attribute", "enter:route", "enter:answering"
    ]  # fmt: skip
    response = channel.response
    assert (response.status, response.body) == (200, b'{"cached": true}')
    assert response.header(b"x-hit") == b"1"
    assert response.header(b"x-costwarden-deployment") == b"gpt"
    assert response.header(b"x-costwarden-cost-usd") == b"0.000000000"
    [record] = sink.records
    # Routed to a priced deployment, yet nothing reached its upstream: the reply costs nothing.
    assert (record.deployment, record.outcome, record.status) == ("gpt", Outcome.SERVED, 200)
    assert record.cost_usd == Decimal(0)
    assert log.count("settle:record") == 1 and log.count("finish:record") == 1


async def test_settle_runs_before_the_last_byte_and_finish_after_it() -> None:
    seen: list[str] = []
    channel = FakeChannel()
    sink = MemorySink()
    chain = Chain([Watcher(channel, seen)], FakeForward(), [Record(sink)])
    await chain.run(chat_exchange(), channel)
    assert seen == ["settle:last-byte-sent=False", "finish:last-byte-sent=True"]
    assert len(sink.records) == 1


async def test_a_refusal_settles_then_finishes() -> None:
    seen: list[str] = []
    channel = FakeChannel()
    sink = MemorySink()
    exchange = Exchange("req-1", "POST", CHAT, b"", [], CHAT_BODY, Protocol.OPENAI, CHAT)  # no key: 401
    chain = Chain([Authenticate(FakeKeys(KEYS)), Watcher(channel, seen)], FakeForward(), [Record(sink)])
    await chain.run(exchange, channel)
    assert channel.response.status == 401
    assert seen == ["settle:last-byte-sent=False", "finish:last-byte-sent=True"]
    assert [r.error_code for r in sink.records] == ["missing_api_key"]


class Hanging:
    """A forward that starts a stream and then waits for ever, as a slow upstream would."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def forward(self, exchange: Exchange, channel: Channel, settle: Settle) -> None:
        exchange.upstream_status = exchange.status = 200
        await channel.start(200, [])
        await channel.body(b"data: {}\n\n", True)
        self.started.set()
        await asyncio.Event().wait()


async def test_a_client_that_leaves_mid_stream_gets_one_record_and_its_hold_finished() -> None:
    log: list[str] = []
    sink = MemorySink()
    forward = Hanging()
    chain = Chain(stages(log), forward, [Spy(Meter(), log), Spy(Record(sink), log)])
    exchange = chat_exchange()
    task = asyncio.create_task(chain.run(exchange, FakeChannel()))
    await forward.started.wait()
    task.cancel()  # what the server does when the client disconnects
    with pytest.raises(asyncio.CancelledError):
        await task
    [record] = sink.records
    assert (record.status, record.error_code) == (499, "client_disconnected")
    assert exchange.settled and exchange.finished
    assert log.count("settle:record") == 1 and log.count("finish:authenticate") == 1


async def test_a_crash_after_the_reply_is_still_finished_once() -> None:
    log: list[str] = []
    sink = MemorySink()
    forward = FakeForward(error=RuntimeError("send failed"), error_after_settle=True)
    chain = Chain(stages(log), forward, [Spy(Record(sink), log)])
    with pytest.raises(RuntimeError):
        await chain.run(chat_exchange(), FakeChannel())
    assert len(sink.records) == 1 and sink.records[0].outcome is Outcome.SERVED
    assert [e for e in log if e.startswith("finish:")] == [
        "finish:record", "finish:route", "finish:attribute", "finish:authenticate"
    ]  # fmt: skip


def budget(action: Action) -> Budget:
    return Budget("b", BudgetScope.of({}), Window.calendar(Unit.DAY, "UTC"), Decimal(1), action=action)


@pytest.mark.parametrize("action", list(Action))
def test_every_budget_action_is_handled_by_every_use(action: Action) -> None:
    # Each use ends in `assert_never`: a member without an arm fails mypy, and raises here.
    assert isinstance(refuses(action), bool)
    assert default_fail_mode(action) in set(FailMode)
    over = admit(budget(action), BudgetState(Amount(Decimal(2))), Amount(Decimal("0.1"), 0, 1), 0.0)
    assert over.action is action
    assert over.admitted is not refuses(action)  # the store and the domain agree on refusing


def test_only_block_and_queue_refuse_and_fail_closed() -> None:
    # queue: the store refuses as for block; the chain then queues the request instead (chain/defer.py)
    assert [a for a in Action if refuses(a)] == [Action.BLOCK, Action.QUEUE]
    assert [a for a in Action if default_fail_mode(a) is FailMode.CLOSED] == [Action.BLOCK, Action.QUEUE]
