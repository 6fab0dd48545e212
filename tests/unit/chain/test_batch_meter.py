"""A batch job's record: its cost at the batch multiplier and, for the savings report, what it would
have cost as a realtime request (on the deployment asked for, even when a degrade budget moved it)."""

from __future__ import annotations

import contextlib
from decimal import Decimal

from costwarden.chain.attribute import Attribute
from costwarden.chain.authenticate import Authenticate
from costwarden.chain.degrade import Degrade
from costwarden.chain.exchange import Exchange
from costwarden.chain.meter import Meter
from costwarden.chain.order import Chain
from costwarden.chain.record import Record
from costwarden.chain.route import RouteStage
from costwarden.chain.target import RouteTable
from costwarden.domain.batch import BatchRef
from costwarden.domain.record import Protocol, UsageRecord
from costwarden.domain.savings import BATCH, SavingsBook
from costwarden.upstream.variant import VariantForward
from tests.unit.chain.fakes import FakeChannel, FakeForward, FakeKeys, MemorySink
from tests.unit.chain.test_degrade import BODY, CHAT, GPT, KEYS, PLAIN, SCOPE, USAGE

HALF = Decimal("0.5")


async def run_job(degraded: dict[str, int], forward: FakeForward | None = None) -> UsageRecord:
    table = RouteTable([GPT, PLAIN])
    sink = MemorySink()
    degrade = Degrade(table, [SCOPE], lambda: degraded)
    before = [Authenticate(FakeKeys(KEYS)), Attribute(), RouteStage(table, 0), degrade]
    chain = Chain(before, VariantForward(forward or FakeForward(usage=USAGE)), [Meter(), Record(sink)])
    headers = [(b"authorization", b"Bearer cw_ann")]
    exchange = Exchange("r1", "POST", CHAT, b"", headers, BODY, Protocol.OPENAI, CHAT)
    exchange.batch = BatchRef("batch_1", "batch_req_1", "k-ann", HALF)
    with contextlib.suppress(RuntimeError):  # a forwarder that fails still leaves one record
        await chain.run(exchange, FakeChannel())
    [record] = sink.records
    return record


async def test_a_job_records_its_realtime_price_beside_its_batch_price() -> None:
    record = await run_job({})
    # 1M in x 2.50 + 100k out x 10 per 1M = 3.50 realtime, 1.75 at the multiplier
    assert (record.cost_usd, record.original_cost_usd) == (Decimal("1.75"), Decimal("3.5"))
    book = SavingsBook.empty()
    book.add([record])
    [row] = book.sorted_rows()
    assert (row.team, row.action, row.requests, row.saved_usd) == ("search", BATCH, 1, Decimal("1.75"))


async def test_a_degraded_job_is_measured_against_the_original_deployment() -> None:
    record = await run_job({"search-month": 1})
    # the variant: 0.21 realtime, 0.105 at the multiplier; without either action: the original's 3.50
    assert (record.variant, record.cost_usd, record.original_cost_usd) == ("mini", Decimal("0.105"), Decimal("3.5"))


async def test_a_job_the_upstream_never_answered_saved_nothing_and_is_not_counted() -> None:
    record = await run_job({}, FakeForward(error=RuntimeError("no upstream answered")))
    assert record.original_cost_usd is None and record.cost_usd == 0
    book = SavingsBook.empty()
    book.add([record])
    assert book.sorted_rows() == []
