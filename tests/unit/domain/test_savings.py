"""Savings by team and action: exact, and equal to the sum over the degraded records."""

from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal

import orjson
from hypothesis import given
from hypothesis import strategies as st

from costwarden.domain.record import UsageRecord
from costwarden.domain.savings import DEGRADE, SavingsBook
from tests.contract.test_store import make_record

nanos = st.integers(min_value=0, max_value=10**12).map(lambda n: Decimal(n).scaleb(-9))


@given(st.lists(st.tuples(st.sampled_from(["a", "b", None]), nanos, st.one_of(st.none(), nanos), st.booleans())))
def test_savings_reconcile_with_the_records(rows: list[tuple[str | None, Decimal, Decimal | None, bool]]) -> None:
    rng = random.Random(0)
    records: list[UsageRecord] = []
    for i, (team, cost, original, by_variant) in enumerate(rows):
        variant = "mini" if original is not None and by_variant else None
        record = make_record(i, rng)
        records.append(replace(record, team=team, cost_usd=cost, original_cost_usd=original, variant=variant))
    book = SavingsBook.empty()
    book.add(records[: len(records) // 2])  # pages, as the service reads them
    book.add(records[len(records) // 2 :])
    degraded = [r for r in records if r.original_cost_usd is not None]
    total = book.total()
    assert total.requests == len(degraded)
    assert total.saved_usd == sum((r.original_cost_usd or 0) - r.cost_usd for r in degraded)
    assert total.fallbacks == sum(r.variant is None for r in degraded)
    for row in book.sorted_rows():
        mine = [r for r in degraded if r.team == row.team]
        assert row.action == DEGRADE
        assert (row.cost_usd, row.original_cost_usd) == (
            sum(r.cost_usd for r in mine),
            sum(r.original_cost_usd or 0 for r in mine),
        )


def test_a_degraded_record_survives_the_spool_line() -> None:
    record = replace(make_record(1, random.Random(1)), variant="mini", original_cost_usd=Decimal("0.000000007"))
    assert UsageRecord.from_json_dict(orjson.loads(record.to_json_line())) == record
    plain = make_record(2, random.Random(2))
    assert UsageRecord.from_json_dict(orjson.loads(plain.to_json_line())) == plain
