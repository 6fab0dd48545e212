"""The batch write path on every adapter (PostgreSQL: COPY into a staging table, then one merge):
a batch repeating a request id stores its first record once, a refused batch leaves nothing behind
(neither rows nor rollups nor staged rows for the next batch), and batches replayed by racing
writers on many connections count every record once in the ledger and in its rollups."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from costwarden.domain.record import Outcome, UsageRecord
from costwarden.domain.report import SpendQuery
from costwarden.ports import RecordRejected, Store
from costwarden.storage.postgres import PostgresStore
from costwarden.storage.sqlite import SQLiteStore
from tests.contract.test_rollups import BASE, assert_matches, usage

WHOLE = SpendQuery(group_by=("team", "deployment"), start=BASE - 1, end=BASE + 10 * 86_400, percentiles=True)


def batch(first: int, n: int) -> list[UsageRecord]:
    return [
        usage(i, BASE + i * 13.7, ("ads", "search", None)[i % 3], ("chat", "iris")[i % 2], Outcome.SERVED, i / 7, i)
        for i in range(first, first + n)
    ]


async def test_a_repeated_request_id_in_one_batch_stores_its_first_record_once(store: Store) -> None:
    first = batch(0, 3)
    twin = replace(first[1], team="search", input_tokens=999_999, latency_ms=5000.0)
    assert await store.write([first[0], first[1], twin, first[2], first[1]]) == 3
    stored = await store.records(None, None, 10)
    assert {r.request_id: r.input_tokens for r in stored} == {r.request_id: r.input_tokens for r in first}
    assert_matches(await store.spend(WHOLE), first)


@pytest.mark.parametrize("poison", [{"items": 2**63}, {"input_tokens": 10**20}, {"latency_ms": "slow"}])
async def test_a_refused_batch_leaves_no_rows_rollups_or_staged_rows(store: Store, poison: dict[str, object]) -> None:
    good = batch(0, 50)
    bad = replace(good[25], request_id="bad", **poison)  # type: ignore[arg-type]
    with pytest.raises(RecordRejected):
        await store.write([*good, bad])
    assert await store.records(None, None, 100) == []
    assert (await store.spend(WHOLE)).total.requests == 0
    # The next batch on the same connections sees none of the refused one's rows.
    assert await store.write(good) == 50
    assert_matches(await store.spend(WHOLE), good)


async def test_batches_after_a_commit_do_not_see_the_previous_stage(store: Store) -> None:
    records = batch(0, 300)
    for k in range(0, 300, 100):
        assert await store.write(records[k : k + 100]) == 100
    assert await store.write(records) == 0  # a replayed spool adds nothing
    assert_matches(await store.spend(WHOLE), records)


async def test_racing_writers_on_many_connections_replaying_overlapping_batches(store: Store) -> None:
    records = batch(0, 2000)
    writers: list[Store] = [store]
    for _ in range(3):
        other: Store = SQLiteStore(store.path) if isinstance(store, SQLiteStore) else PostgresStore(store.dsn)  # type: ignore[attr-defined]
        await other.open()
        writers.append(other)
    try:
        # Every writer replays the whole ledger in overlapping batches, in a different order.
        jobs = [
            w.write(records[k : k + 400])
            for n, w in enumerate(writers)
            for k in (range(0, 2000, 250) if n % 2 else range(1750, -1, -250))
        ]
        assert sum(await asyncio.gather(*jobs)) == 2000
    finally:
        for w in writers[1:]:
            await w.close()
    assert_matches(await store.spend(WHOLE), records)
    assert_matches(await store.spend(SpendQuery(group_by=("key_id",), percentiles=True)), records)


async def test_histograms_of_cells_written_by_many_batches_merge_exactly(store: Store) -> None:
    # 40 batches into the same few minute, hour and day cells, latencies over many bins: every
    # upsert merges a stored histogram with an incoming one.
    records = [
        usage(i, BASE + (i % 50), ("ads", "search")[i % 2], "chat", Outcome.SERVED, 0.05 * 1.37 ** (i % 60), i)
        for i in range(2000)
    ]
    for k in range(0, 2000, 50):
        assert await store.write(records[k : k + 50]) == 50
    for groups in ((), ("team",), ("key_id",)):
        q = SpendQuery(group_by=groups, start=BASE - 60, end=BASE + 86_400 * 2, percentiles=True)
        assert_matches(await store.spend(q), records)
