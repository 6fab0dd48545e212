"""Numbers at the protocol edge: a client's absurd count is a 4xx with a record; an upstream's
absurd usage is bounded and recorded as its fault; whatever reaches the record stage is storable.

The chain is built as the runtime builds it: bound, meter and record settle in that order.
"""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costwarden.chain.attribute import Attribute
from costwarden.chain.authenticate import Authenticate
from costwarden.chain.bound import IMPLAUSIBLE, BoundUsage
from costwarden.chain.exchange import Exchange
from costwarden.chain.meter import Meter
from costwarden.chain.order import Chain
from costwarden.chain.record import Record
from costwarden.chain.route import RouteStage
from costwarden.chain.target import RouteTable
from costwarden.domain.limits import INT64_MAX, MAX_COST_USD, OUT_OF_RANGE, violations
from costwarden.domain.record import Outcome, Protocol, UsageRecord
from costwarden.domain.usage import Usage
from costwarden.protocols.openai import TEMPLATE_TOKENS
from tests.unit.chain.fakes import FakeChannel, FakeForward, FakeKeys, MemorySink
from tests.unit.chain.test_order import DEPLOYMENTS, KEYS, bearer

CHAT = "/v1/chat/completions"


async def run(
    body: bytes, forward: FakeForward, protocol: Protocol = Protocol.OPENAI, path: str = CHAT
) -> tuple[UsageRecord, FakeChannel, list[Exchange]]:
    sink = MemorySink()
    flagged: list[Exchange] = []
    chain = Chain(
        [Authenticate(FakeKeys(KEYS)), Attribute(), RouteStage(RouteTable(DEPLOYMENTS), created=0)],
        forward,
        [BoundUsage(flagged.append), Meter(), Record(sink)],
    )
    endpoint = CHAT if protocol is Protocol.OPENAI else "/v2/infer"
    exchange = Exchange("req-1", "POST", path, b"", [bearer("cw_alice_s")], body, protocol, endpoint)
    channel = FakeChannel()
    await chain.run(exchange, channel)
    (record,) = sink.records
    assert violations(record) == []
    return record, channel, flagged


@pytest.mark.parametrize("shape", [[18446744073709551615, 4], [2**63, 1], [1, 2**40]])
async def test_an_absurd_v2_shape_is_a_400_in_the_v2_shape_with_a_record(shape: list[int]) -> None:
    body = orjson.dumps({"inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": []}]})
    forward = FakeForward()
    record, channel, _ = await run(body, forward, Protocol.V2, "/v2/models/iris/infer")
    assert forward.calls == 0
    assert channel.response.status == 400
    error = orjson.loads(channel.response.body)
    assert set(error) == {"error"} and "shape" in error["error"]
    assert (record.status, record.outcome, record.error_code) == (400, Outcome.REJECTED, "shape_out_of_range")
    assert (record.items, record.cost_usd) == (0, Decimal(0))


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens", "n"])
async def test_an_absurd_openai_count_is_a_400_with_a_record(field: str) -> None:
    body = orjson.dumps({"model": "gpt", "messages": [{"role": "user", "content": "hi"}], field: 10**17})
    forward = FakeForward()
    record, channel, _ = await run(body, forward)
    assert forward.calls == 0
    assert channel.response.status == 400
    error = orjson.loads(channel.response.body)["error"]
    assert error["code"] == "integer_out_of_range" and error["type"] == "invalid_request_error"
    assert (record.status, record.error_code, record.cost_usd) == (400, "integer_out_of_range", Decimal(0))


@pytest.mark.parametrize(
    "usage",
    [
        Usage(input_tokens=10**17, output_tokens=5),
        Usage(input_tokens=2**64 - 1, output_tokens=2**64 - 1, cached_tokens=2**64 - 1),
        Usage(input_tokens=3, output_tokens=10**17),
        Usage(input_tokens=3, output_tokens=5, cached_tokens=10**17),
        Usage(input_tokens=3, output_tokens=5, reasoning_tokens=10**17),
    ],
)
async def test_an_upstreams_absurd_usage_is_bounded_and_recorded_as_its_fault(usage: Usage) -> None:
    body = orjson.dumps({"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64})
    record, channel, flagged = await run(body, FakeForward(usage=usage))
    assert channel.response.status == 200  # the client got its answer
    assert record.error_code == IMPLAUSIBLE and record.outcome is Outcome.SERVED
    assert record.input_tokens <= len(body) + TEMPLATE_TOKENS
    assert record.output_tokens <= 64
    assert record.cached_tokens <= record.input_tokens
    assert record.reasoning_tokens <= record.output_tokens
    # Priced on the bounded usage (0.15 / 0.60 per 1M tokens and 0.0001 per request): cents at most.
    assert record.cost_usd < Decimal("0.01")
    assert channel.response.header(b"x-costwarden-cost-usd") == str(record.cost_usd).encode()
    assert [e.request_id for e in flagged] == ["req-1"]


async def test_plausible_usage_is_left_alone() -> None:
    body = orjson.dumps({"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64})
    record, _, flagged = await run(body, FakeForward(usage=Usage(input_tokens=9, output_tokens=64, cached_tokens=9)))
    assert (record.input_tokens, record.output_tokens, record.cached_tokens) == (9, 64, 9)
    assert record.error_code is None and flagged == []


async def test_a_model_name_with_nul_is_recorded_storably() -> None:
    body = orjson.dumps({"model": "gpt\u0000" + "x" * 5000, "messages": []})
    record, channel, _ = await run(body, FakeForward())
    assert channel.response.status == 404
    assert record.model is not None and "\x00" not in record.model and len(record.model) <= 256


async def test_the_record_stage_makes_any_exchange_storable() -> None:
    sink = MemorySink()
    exchange = Exchange("req-1", "POST", "/v2/models/iris/infer", b"", [], b"", Protocol.V2, "/v2/infer")
    exchange.usage = Usage(items=2**64 - 1)
    exchange.cost = Decimal(10**30)
    exchange.status = 200
    await Record(sink).settle(exchange)
    (record,) = sink.records
    assert violations(record) == []
    assert (record.items, record.cost_usd, record.error_code) == (INT64_MAX, MAX_COST_USD, OUT_OF_RANGE)
    assert exchange.cost == MAX_COST_USD  # admission settles with what the ledger holds


async def test_the_record_stage_clamps_modal_units_too() -> None:
    sink = MemorySink()
    exchange = Exchange("req-1", "POST", CHAT, b"", [], b"", Protocol.OPENAI, "/v1/images/generations")
    exchange.usage = Usage(reasoning_tokens=2**64, images=2**64 - 1, audio_ms=2**70, characters=-1, documents=3)
    exchange.status = 200
    await Record(sink).settle(exchange)
    (record,) = sink.records
    assert violations(record) == [] and record.error_code == OUT_OF_RANGE
    assert (record.reasoning_tokens, record.images, record.audio_ms) == (INT64_MAX, INT64_MAX, INT64_MAX)
    assert (record.characters, record.documents) == (0, 3)


FUZZ = settings(max_examples=150, deadline=None, database=None)
HUGE = st.integers(min_value=-(2**70), max_value=2**70) | st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 0])


@FUZZ
@given(st.lists(st.lists(HUGE, min_size=0, max_size=5), min_size=0, max_size=4))
async def test_fuzz_v2_shapes_never_500_and_always_record(shapes: list[list[int]]) -> None:
    inputs = [{"name": f"x{i}", "shape": s, "datatype": "FP32", "data": []} for i, s in enumerate(shapes)]
    try:
        body = orjson.dumps({"inputs": inputs})
    except TypeError:  # beyond 64 bits: send the digits as JSON text, as a hostile client would
        body = ('{"inputs": [' + ",".join(f'{{"shape": {s}}}' for s in shapes) + "]}").encode()
    _, channel, _ = await run(body, FakeForward(), Protocol.V2, "/v2/models/iris/infer")
    assert channel.response.status in (200, 400)


@FUZZ
@given(
    st.fixed_dictionaries({}, optional={"max_tokens": HUGE, "n": HUGE, "max_completion_tokens": HUGE}),
    st.builds(Usage, input_tokens=HUGE.filter(lambda v: v >= 0), output_tokens=HUGE.filter(lambda v: v >= 0)),
)
async def test_fuzz_openai_counts_and_usage_never_500_and_always_storable(counts: dict[str, int], usage: Usage) -> None:
    payload = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}], **counts}
    try:
        body = orjson.dumps(payload)
    except TypeError:
        return  # orjson cannot even write it; the V2 fuzz covers raw digits
    record, channel, _ = await run(body, FakeForward(usage=usage))
    assert channel.response.status in (200, 400)
    assert record.cost_usd <= MAX_COST_USD  # run() also checked that the record is storable
