"""Raw-record retention on every adapter: pruning deletes only raw records started before the
cutoff, batch by batch, and every report over whole rolled-up buckets keeps its totals; the records
kept still count once when a spool replays them."""

from __future__ import annotations

import asyncio

from costwarden.domain.record import Outcome, UsageRecord
from costwarden.domain.report import SpendQuery
from costwarden.ports import Store
from costwarden.services.retention import RetentionLoop, prune_ledger
from tests.contract.test_rollups import BASE, assert_matches, usage

DAY = 86_400
START = BASE - BASE % DAY  # a UTC day start: whole days are read from the rollups


def ledger(days: int, per_day: int) -> list[UsageRecord]:
    return [
        usage(i, START + i * DAY / per_day, ("ads", "search")[i % 2], "chat", Outcome.SERVED, 1.0 + i % 300, i)
        for i in range(days * per_day)
    ]


async def test_pruning_keeps_rollup_totals_and_only_deletes_old_raw_records(store: Store) -> None:
    records = ledger(4, 250)
    assert await store.write(records) == 1000
    whole = SpendQuery(group_by=("team", "key_id"), start=START, end=START + 4 * DAY, percentiles=True)
    by_day = [SpendQuery(group_by=("team",), start=START + d * DAY, end=START + (d + 1) * DAY) for d in range(4)]
    before = START + 2 * DAY
    assert await prune_ledger(store, before, batch=64) == 500  # 8 batches, the last one short
    kept = await store.records(None, None, 2000)
    assert sorted(r.request_id for r in kept) == sorted(r.request_id for r in records if r.started_at >= before)
    assert_matches(await store.spend(whole), records)  # whole days: from the rollups
    for q in by_day:
        assert_matches(await store.spend(q), records)
    assert await store.write(records[500:]) == 0  # a replay of kept records adds nothing
    assert_matches(await store.spend(whole), records)


async def test_pruning_nothing_old_deletes_nothing(store: Store) -> None:
    records = ledger(1, 100)
    await store.write(records)
    assert await prune_ledger(store, START, batch=10) == 0
    assert await store.prune(START + DAY, 0) == 0  # a batch of zero deletes nothing
    assert len(await store.records(None, None, 200)) == 100


async def test_the_leading_gateway_prunes_by_itself_and_a_follower_does_not(store: Store) -> None:
    records = ledger(4, 50)
    await store.write(records)
    now = START + 5 * DAY  # raw_days=2.5: records started before START + 2.5 days go
    leads = {"value": False}

    async def lead(at: float) -> bool:
        assert at == now
        return leads["value"]

    prune = lambda before: prune_ledger(store, before, 16)  # noqa: E731
    loop = RetentionLoop(prune, lead, days=2.5, every_s=3600, clock=lambda: now)
    assert await loop.tick() == 0  # not the leader: nothing goes
    assert len(await store.records(None, None, 500)) == 200
    leads["value"] = True
    assert await loop.tick() == 125
    kept = await store.records(None, None, 500)
    recent = [r.request_id for r in records if r.started_at >= now - 2.5 * DAY]
    assert sorted(r.request_id for r in kept) == sorted(recent)
    assert_matches(await store.spend(SpendQuery(group_by=("team",), start=START, end=START + 4 * DAY)), records)
    loop.start()  # the background round prunes nothing more and stops cleanly
    await asyncio.sleep(0.05)
    await loop.stop()
    assert loop.pruned == 125
