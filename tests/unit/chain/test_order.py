"""The chain: every request settles once and leaves exactly one ledger record, whatever happens.

Built from the real stages (authenticate, attribute, route, meter, record) with fakes around them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
import pytest

from costwarden.chain.attribute import Attribute
from costwarden.chain.authenticate import Authenticate, presented_key
from costwarden.chain.exchange import Exchange
from costwarden.chain.meter import Meter
from costwarden.chain.order import Chain
from costwarden.chain.record import Record
from costwarden.chain.route import RouteStage
from costwarden.chain.stage import PassStage
from costwarden.chain.target import RouteTable
from costwarden.config.models import Deployment
from costwarden.domain.keys import KeyIdentity
from costwarden.domain.record import Outcome, Protocol, UsageRecord
from costwarden.domain.usage import Usage
from costwarden.protocols.errors import GatewayError
from tests.unit.chain.fakes import FakeChannel, FakeForward, FakeKeys, MemorySink, Response, Spy

CHAT = "/v1/chat/completions"
BEFORE = ("authenticate", "attribute", "route")
SETTLE_ORDER = ["settle:meter", "settle:record", "settle:route", "settle:attribute", "settle:authenticate"]

DEPLOYMENTS = [
    Deployment.model_validate(
        {
            "name": "gpt",
            "protocol": "openai",
            "upstream": "http://127.0.0.1:9000",
            "model": "org/gpt-small",
            "pricing": {"input_per_1m": "0.15", "output_per_1m": "0.60", "per_request": "0.0001"},
        }
    ),
    Deployment.model_validate(
        {"name": "llama", "protocol": "openai", "upstream": "http://127.0.0.1:9001", "pricing": {"per_request": "1"}}
    ),
    Deployment.model_validate(
        {
            "name": "iris",
            "protocol": "v2",
            "upstream": "http://127.0.0.1:9002",
            "pricing": {"per_item": "0.001", "per_request": "0.01"},
        }
    ),
]

ALICE = KeyIdentity(
    key_id="k-alice", team="search", project="ranker", environment="prod", tags=(("cost_center", "cc-7"),)
)
TAGGER = KeyIdentity(
    key_id="k-tagger",
    team="search",
    project="ranker",
    environment="dev",
    allow_client_tags=True,
    tags=(("cost_center", "cc-7"),),
)
LLAMA_ONLY = KeyIdentity(
    key_id="k-llama", team="labs", project="chat", environment="staging", deployments=frozenset({"llama"})
)
KEYS = {"cw_alice_s": ALICE, "cw_tagger_s": TAGGER, "cw_llama_s": LLAMA_ONLY}


def bearer(token: str) -> tuple[bytes, bytes]:
    return (b"authorization", b"Bearer " + token.encode())


@dataclass
class Run:
    exchange: Exchange
    log: list[str]
    sink: MemorySink
    channel: FakeChannel
    forward: FakeForward
    raised: BaseException | None = None

    @property
    def record(self) -> UsageRecord:
        assert len(self.sink.records) == 1, self.sink.records
        return self.sink.records[0]

    @property
    def response(self) -> Response:
        return self.channel.response

    def json(self) -> Any:
        return orjson.loads(self.response.body)

    def settles(self) -> list[str]:
        return [entry for entry in self.log if entry.startswith("settle:")]

    def finishes(self) -> list[str]:
        return [entry for entry in self.log if entry.startswith("finish:")]

    def enters(self) -> list[str]:
        return [entry.removeprefix("enter:") for entry in self.log if entry.startswith("enter:")]


async def run(
    headers: list[tuple[bytes, bytes]],
    body: bytes = b"",
    *,
    protocol: Protocol = Protocol.OPENAI,
    path: str = CHAT,
    method: str = "POST",
    forward: FakeForward | None = None,
) -> Run:
    log: list[str] = []
    sink = MemorySink()
    before = [Authenticate(FakeKeys(KEYS)), Attribute(), RouteStage(RouteTable(DEPLOYMENTS), created=1_700_000_000)]
    after = [Meter(), Record(sink)]
    forwarder = forward or FakeForward(usage=Usage(input_tokens=1000, output_tokens=500))
    chain = Chain([Spy(s, log) for s in before], forwarder, [Spy(s, log) for s in after])
    endpoint = path if protocol is Protocol.OPENAI else ("/v2/infer" if path.endswith("/infer") else "/v2/models")
    exchange = Exchange(
        request_id="req-1",
        method=method,
        path=path,
        query=b"",
        headers=headers,
        body=body,
        protocol=protocol,
        endpoint=endpoint,
    )
    channel = FakeChannel()
    result = Run(exchange, log, sink, channel, forwarder)
    try:
        await chain.run(exchange, channel)
    except BaseException as exc:  # the tests inspect what escaped, including CancelledError
        result.raised = exc
    return result


def assert_settled_once(result: Run) -> None:
    assert result.settles() == SETTLE_ORDER  # each stage exactly once: meter, record, then reversed
    assert result.finishes() == [f"finish:{entry.removeprefix('settle:')}" for entry in SETTLE_ORDER]
    assert result.exchange.settled and result.exchange.finished
    assert len(result.sink.records) == 1


def assert_rejected(result: Run, status: int, code: str, entered: tuple[str, ...]) -> UsageRecord:
    assert result.raised is None
    assert_settled_once(result)
    assert result.enters() == list(entered)
    assert result.forward.calls == 0
    response = result.response
    assert response.status == status
    assert response.header(b"content-type") == b"application/json"
    assert response.header(b"x-costwarden-request-id") == b"req-1"
    assert response.header(b"x-costwarden-cost-usd") == b"0.000000000"
    record = result.record
    assert record.request_id == "req-1"
    assert record.status == status
    assert record.error_code == code
    assert record.outcome is Outcome.REJECTED
    assert record.cost_usd == 0
    return record


def assert_openai_error(result: Run, code: str, kind: str) -> None:
    body = result.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "code", "param"}
    assert body["error"]["code"] == code
    assert body["error"]["type"] == kind
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


CHAT_BODY = b'{"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}'


async def test_a_served_request() -> None:
    result = await run([bearer("cw_alice_s")], CHAT_BODY)
    assert result.raised is None
    assert_settled_once(result)
    assert result.enters() == list(BEFORE)
    assert result.forward.calls == 1
    # The upstream gets its own model name; the ledger keeps the one the client asked for.
    assert orjson.loads(result.exchange.upstream_body) == {**orjson.loads(CHAT_BODY), "model": "org/gpt-small"}
    # 1000 x 0.15/1M + 500 x 0.60/1M + 0.0001 = 0.00015 + 0.0003 + 0.0001
    cost = Decimal("0.000550000")
    response = result.response
    assert response.status == 200
    assert response.header(b"x-costwarden-request-id") == b"req-1"
    assert response.header(b"x-costwarden-deployment") == b"gpt"
    assert response.header(b"x-costwarden-cost-usd") == b"0.000550000"
    record = result.record
    assert record.outcome is Outcome.SERVED
    assert record.status == 200 and record.upstream_status == 200
    assert record.error_code is None
    assert (record.key_id, record.team, record.project, record.environment) == ("k-alice", "search", "ranker", "prod")
    assert record.tags == {"cost_center": "cc-7"}
    assert (record.deployment, record.model, record.protocol, record.endpoint) == ("gpt", "gpt", "openai", CHAT)
    assert (record.input_tokens, record.output_tokens) == (1000, 500)
    assert record.cost_usd == cost
    assert record.pricing_basis == "tokens+request"
    assert record.upstream_ms == pytest.approx(250.0)
    assert record.request_bytes == len(CHAT_BODY)
    assert record.latency_ms >= 0 and record.ended_at >= record.started_at


async def test_the_key_may_come_as_x_api_key() -> None:
    result = await run([(b"x-api-key", b"cw_alice_s")], CHAT_BODY)
    assert result.response.status == 200
    assert result.record.key_id == "k-alice"


async def test_no_key() -> None:
    result = await run([], CHAT_BODY)
    record = assert_rejected(result, 401, "missing_api_key", ("authenticate",))
    assert_openai_error(result, "missing_api_key", "invalid_request_error")  # OpenAI's type for key errors
    assert record.key_id is None and record.team is None and record.deployment is None
    assert result.response.header(b"x-costwarden-deployment") is None


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ([bearer("cw_nobody_s")], "invalid_api_key"),
        ([(b"x-api-key", b"wrong")], "invalid_api_key"),
        ([(b"authorization", b"Basic Y3dfYWxpY2Vfcw==")], "missing_api_key"),  # only Bearer counts
    ],
)
async def test_an_invalid_key(headers: list[tuple[bytes, bytes]], code: str) -> None:
    result = await run(headers, CHAT_BODY)
    assert_rejected(result, 401, code, ("authenticate",))
    assert_openai_error(result, code, "invalid_request_error")


async def test_a_revoked_key_raised_by_the_resolver() -> None:
    class Revoking(FakeKeys):
        def resolve(self, token: str) -> KeyIdentity | None:
            raise GatewayError(401, "revoked_api_key", "revoked", kind="invalid_request_error")

    log: list[str] = []
    sink = MemorySink()
    chain = Chain([Spy(Authenticate(Revoking({})), log)], FakeForward(), [Spy(Record(sink), log)])
    exchange = Exchange("r", "POST", CHAT, b"", [bearer("cw_x_y")], CHAT_BODY, Protocol.OPENAI, CHAT)
    await chain.run(exchange, FakeChannel())
    assert [r.error_code for r in sink.records] == ["revoked_api_key"]
    assert log == ["enter:authenticate", "settle:record", "settle:authenticate", "finish:record", "finish:authenticate"]


async def test_client_tags_not_allowed() -> None:
    result = await run([bearer("cw_alice_s"), (b"x-costwarden-tags", b"feature=chat")], CHAT_BODY)
    record = assert_rejected(result, 403, "tags_not_allowed", ("authenticate", "attribute"))
    assert_openai_error(result, "tags_not_allowed", "permission_error")
    assert record.key_id == "k-alice"  # attribution from the key is still recorded
    assert record.deployment is None


async def test_invalid_client_tags() -> None:
    result = await run([bearer("cw_tagger_s"), (b"x-costwarden-tags", b"bad name=x")], CHAT_BODY)
    assert_rejected(result, 400, "invalid_tags", ("authenticate", "attribute"))
    assert_openai_error(result, "invalid_tags", "invalid_request_error")


async def test_allowed_client_tags_extend_but_never_override() -> None:
    tags = b"feature=chat, cost_center=stolen"
    result = await run([bearer("cw_tagger_s"), (b"x-costwarden-tags", tags)], CHAT_BODY)
    assert result.response.status == 200
    assert result.record.tags == {"feature": "chat", "cost_center": "cc-7"}


async def test_an_unknown_model() -> None:
    result = await run([bearer("cw_alice_s")], b'{"model": "gpt-9"}')
    record = assert_rejected(result, 404, "model_not_found", BEFORE)
    assert_openai_error(result, "model_not_found", "invalid_request_error")
    assert record.model == "gpt-9"
    assert record.deployment is None


async def test_a_key_restricted_to_other_deployments() -> None:
    result = await run([bearer("cw_llama_s")], CHAT_BODY)
    assert_rejected(result, 404, "model_not_found", BEFORE)
    assert_openai_error(result, "model_not_found", "invalid_request_error")
    allowed = await run([bearer("cw_llama_s")], b'{"model": "llama"}')
    assert allowed.response.status == 200
    assert allowed.record.deployment == "llama"
    assert allowed.record.cost_usd == Decimal("1.000000000")


async def test_a_v2_model_is_not_an_openai_model() -> None:
    result = await run([bearer("cw_alice_s")], b'{"model": "iris"}')
    assert_rejected(result, 404, "model_not_found", BEFORE)


async def test_invalid_json() -> None:
    result = await run([bearer("cw_alice_s")], b"{nope")
    assert_rejected(result, 400, "invalid_json", BEFORE)
    assert_openai_error(result, "invalid_json", "invalid_request_error")


async def test_the_models_list_is_answered_locally_and_costs_nothing() -> None:
    result = await run([bearer("cw_llama_s")], b"", path="/v1/models", method="GET")
    assert_settled_once(result)
    assert result.response.status == 200
    assert [m["id"] for m in result.json()["data"]] == ["llama"]  # only what the key may use
    assert result.record.outcome is Outcome.SERVED
    assert result.record.cost_usd == 0


INFER = orjson.dumps({"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32", "data": [0.0] * 12}]})


async def test_a_served_v2_infer_is_billed_per_item() -> None:
    result = await run([bearer("cw_alice_s")], INFER, protocol=Protocol.V2, path="/v2/models/iris/infer")
    assert_settled_once(result)
    assert result.response.status == 200
    record = result.record
    assert record.items == 3
    assert record.cost_usd == Decimal("0.013000000")  # 0.01 per request + 3 x 0.001
    assert result.response.header(b"x-costwarden-cost-usd") == b"0.013000000"
    assert result.exchange.upstream_path == "/v2/models/iris/infer"


async def test_v2_errors_are_in_the_v2_shape() -> None:
    result = await run([], INFER, protocol=Protocol.V2, path="/v2/models/iris/infer")
    assert_rejected(result, 401, "missing_api_key", ("authenticate",))
    body = result.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]


async def test_an_unknown_v2_model() -> None:
    result = await run([bearer("cw_alice_s")], INFER, protocol=Protocol.V2, path="/v2/models/rose/infer")
    assert_rejected(result, 404, "model_not_found", BEFORE)
    assert isinstance(result.json()["error"], str)


async def test_a_v2_infer_with_a_bad_body_is_not_billed() -> None:
    result = await run([bearer("cw_alice_s")], b'{"inputs": []}', protocol=Protocol.V2, path="/v2/models/iris/infer")
    record = assert_rejected(result, 400, "invalid_request", BEFORE)
    assert record.deployment == "iris"  # routed, then refused: known deployment, zero cost
    assert record.cost_usd == 0
    assert result.response.header(b"x-costwarden-deployment") == b"iris"


async def test_a_v2_infer_must_be_a_post() -> None:
    result = await run([bearer("cw_alice_s")], b"", protocol=Protocol.V2, path="/v2/models/iris/infer", method="GET")
    assert_rejected(result, 405, "method_not_allowed", BEFORE)


async def test_an_upstream_refusal_costs_nothing() -> None:
    forward = FakeForward(status=429, body=b'{"error": "slow down"}')
    result = await run([bearer("cw_alice_s")], CHAT_BODY, forward=forward)
    assert_settled_once(result)
    assert result.response.status == 429
    record = result.record
    assert (record.status, record.upstream_status, record.error_code) == (429, 429, "upstream_429")
    assert record.outcome is Outcome.REJECTED
    assert record.cost_usd == 0
    assert result.response.header(b"x-costwarden-cost-usd") == b"0.000000000"


async def test_an_exception_in_the_forwarder_still_leaves_one_record() -> None:
    result = await run([bearer("cw_alice_s")], CHAT_BODY, forward=FakeForward(error=RuntimeError("boom")))
    assert isinstance(result.raised, RuntimeError)  # the bug is not swallowed
    assert_settled_once(result)
    record = result.record
    assert record.outcome is not Outcome.SERVED
    assert record.error_code is not None
    assert record.deployment == "gpt"
    assert record.cost_usd == 0


async def test_an_exception_after_settle_does_not_settle_twice() -> None:
    forward = FakeForward(error=RuntimeError("send failed"), error_after_settle=True)
    result = await run([bearer("cw_alice_s")], CHAT_BODY, forward=forward)
    assert isinstance(result.raised, RuntimeError)
    assert_settled_once(result)
    assert result.record.outcome is Outcome.SERVED  # it was served and settled before the failure


async def test_a_client_disconnect_is_recorded_as_such() -> None:
    result = await run([bearer("cw_alice_s")], CHAT_BODY, forward=FakeForward(error=asyncio.CancelledError()))
    assert isinstance(result.raised, asyncio.CancelledError)
    assert_settled_once(result)
    assert result.record.status == 499
    assert result.record.error_code == "client_disconnected"


async def test_a_crash_in_the_forwarder_is_not_recorded_as_a_client_disconnect() -> None:
    # The gateway answers such a crash with 500 `internal_error` (app/gateway.py); the ledger must
    # agree with what the client received, not blame the client.
    result = await run([bearer("cw_alice_s")], CHAT_BODY, forward=FakeForward(error=RuntimeError("boom")))
    record = result.record
    assert record.error_code != "client_disconnected"
    assert record.status == 500
    assert record.outcome is Outcome.FAILED


async def test_a_failing_settle_does_not_lose_the_record() -> None:
    class Broken:
        name = "broken"

        async def enter(self, exchange: Exchange) -> None:
            return None

        async def settle(self, exchange: Exchange) -> None:
            raise RuntimeError("settle bug")

        async def finish(self, exchange: Exchange) -> None:
            raise RuntimeError("finish bug")

    log: list[str] = []
    sink = MemorySink()
    chain = Chain([Spy(Broken(), log)], FakeForward(), [Spy(Meter(), log), Spy(Broken(), log), Spy(Record(sink), log)])
    exchange = Exchange("r", "POST", CHAT, b"", [], CHAT_BODY, Protocol.OPENAI, CHAT)
    await chain.run(exchange, FakeChannel())
    assert len(sink.records) == 1
    assert log[-8:-4] == ["settle:meter", "settle:broken", "settle:record", "settle:broken"]
    assert log[-4:] == ["finish:meter", "finish:broken", "finish:record", "finish:broken"]


async def test_settle_is_idempotent() -> None:
    sink = MemorySink()
    chain = Chain([], FakeForward(), [Record(sink)])
    exchange = Exchange("r", "POST", CHAT, b"", [], b"", Protocol.OPENAI, CHAT)
    await chain.settle(exchange)
    await chain.settle(exchange)
    assert len(sink.records) == 1


def test_stage_names_say_the_order() -> None:
    chain = Chain(
        [Authenticate(FakeKeys({})), Attribute(), RouteStage(RouteTable(DEPLOYMENTS), 0)],
        FakeForward(),
        [Meter(), Record(MemorySink())],
    )
    assert chain.stage_names == ("authenticate", "attribute", "route", "forward", "meter", "record")


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ([(b"authorization", b"Bearer  cw_a_b ")], "cw_a_b"),
        ([(b"authorization", b"bearer cw_a_b")], "cw_a_b"),
        ([(b"x-api-key", b" cw_a_b ")], "cw_a_b"),
        ([(b"authorization", b"Bearer "), (b"x-api-key", b"cw_c_d")], "cw_c_d"),
        ([(b"authorization", b"Token cw_a_b")], None),
        ([(b"x-api-key", b"  ")], None),
        ([], None),
    ],
)
def test_presented_key(headers: list[tuple[bytes, bytes]], key: str | None) -> None:
    assert presented_key(headers) == key


class GroupedSink:
    """A sink whose records are durable only once a later loop turn writes them (a grouped spool)."""

    def __init__(self) -> None:
        self.records: list[UsageRecord] = []
        self.written: list[UsageRecord] = []
        self.waiting: list[asyncio.Future[None]] = []
        self.appended = asyncio.Event()

    def append(self, record: UsageRecord, fitted: bool = False) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        self.records.append(record)
        self.appended.set()
        done = loop.create_future()
        self.waiting.append(done)
        loop.call_soon(self._write, record, done)
        return done

    def _write(self, record: UsageRecord, done: asyncio.Future[None]) -> None:
        self.written.append(record)
        if not done.done():
            done.set_result(None)


class WatchingChannel(FakeChannel):
    """Notes whether the record was on disk when the client got its last byte."""

    def __init__(self, sink: GroupedSink) -> None:
        super().__init__()
        self.sink = sink
        self.written_at_last_byte: int | None = None

    async def body(self, data: bytes, more: bool) -> None:
        await super().body(data, more)
        if not more:
            self.written_at_last_byte = len(self.sink.written)


async def test_the_last_byte_waits_for_a_grouped_spool_write() -> None:
    sink = GroupedSink()
    log: list[str] = []
    chain = Chain([Spy(Attribute(), log)], FakeForward(), [Spy(Meter(), log), Spy(Record(sink), log)])
    exchange = Exchange("r", "POST", CHAT, b"", [], CHAT_BODY, Protocol.OPENAI, CHAT)
    channel = WatchingChannel(sink)
    await chain.run(exchange, channel)
    assert channel.written_at_last_byte == 1  # the record was written before the client's last byte
    assert exchange.spooled is None


async def test_a_cancel_during_the_spool_wait_skips_no_settle() -> None:
    sink = GroupedSink()
    log: list[str] = []
    chain = Chain([Spy(Attribute(), log)], FakeForward(), [Spy(Meter(), log), Spy(Record(sink), log)])
    exchange = Exchange("r", "POST", CHAT, b"", [], CHAT_BODY, Protocol.OPENAI, CHAT)
    task = asyncio.create_task(chain.run(exchange, FakeChannel()))
    await sink.appended.wait()
    task.cancel()  # the client left while its record's write was pending
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [e for e in log if e.startswith("settle:")] == ["settle:meter", "settle:record", "settle:attribute"]
    assert [e for e in log if e.startswith("finish:")] == ["finish:meter", "finish:record", "finish:attribute"]
    await asyncio.sleep(0)
    assert sink.written == sink.records  # the record is written all the same, once
    assert len(sink.records) == 1


async def test_a_hook_a_stage_leaves_to_pass_stage_is_not_awaited(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each hook awaits only the stages that act on it; the others keep PassStage's, which does nothing."""
    called: list[str] = []

    def null(hook: str) -> Any:
        async def nothing(self: PassStage, exchange: Exchange) -> None:
            called.append(f"{hook}:{self.name}")

        return nothing

    for hook in ("enter", "settle", "finish"):
        monkeypatch.setattr(PassStage, hook, null(hook))
    sink = MemorySink()
    log: list[str] = []
    chain = Chain([Attribute(), Spy(Attribute(), log)], FakeForward(), [Meter(), Record(sink)])
    exchange = Exchange("r", "POST", CHAT, b"", [], CHAT_BODY, Protocol.OPENAI, CHAT, identity=ALICE)
    await chain.run(exchange, FakeChannel())
    assert exchange.error is None
    # Attribute acts on enter only, Meter and Record on settle only: their PassStage hooks are not
    # awaited. The spy is no PassStage, so every hook of it is, and it calls the Attribute it wraps.
    assert log == ["enter:attribute", "settle:attribute", "finish:attribute"]
    assert called == ["settle:attribute", "finish:attribute"]
    assert len(sink.records) == 1 and exchange.finished
