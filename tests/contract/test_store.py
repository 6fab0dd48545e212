"""One suite for the Store port (ledger + keys), run against every adapter: SQLite and PostgreSQL."""

from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from costwarden.domain.keys import KeyIdentity, StoredKey
from costwarden.domain.latency_histogram import RELATIVE_ERROR
from costwarden.domain.money import quantize
from costwarden.domain.record import Outcome, UsageRecord
from costwarden.domain.report import RecordCursor, SpendQuery, nearest_rank
from costwarden.ports import Store
from costwarden.storage.sqlite import SQLiteStore

HISTOGRAM_ERROR = RELATIVE_ERROR * (1 + 1e-9)


def make_record(i: int, rng: random.Random, start: float = 1_800_000_000.0) -> UsageRecord:
    team = rng.choice(["search", "ads", None])
    served = rng.random() < 0.8
    return UsageRecord(
        request_id=f"req-{i:06d}",
        started_at=start + i,
        ended_at=start + i + 0.2,
        key_id=None if team is None else f"k-{team}",
        team=team,
        project=None if team is None else "p",
        environment=None if team is None else rng.choice(["prod", "dev"]),
        tags={"n": str(i % 3)},
        deployment=rng.choice(["chat", "iris"]),
        protocol="openai",
        endpoint="/v1/chat/completions",
        method="POST",
        model="chat",
        stream=rng.random() < 0.3,
        status=200 if served else 400,
        upstream_status=200 if served else None,
        outcome=Outcome.SERVED if served else Outcome.REJECTED,
        error_code=None if served else "invalid_json",
        latency_ms=round(rng.uniform(0.5, 400.0), 3),
        upstream_ms=round(rng.uniform(0.1, 300.0), 3) if served else None,
        input_tokens=rng.randint(0, 5000),
        output_tokens=rng.randint(0, 900),
        cached_tokens=rng.randint(0, 100),
        items=rng.randint(0, 32),
        request_bytes=rng.randint(10, 9000),
        response_bytes=rng.randint(10, 9000),
        cost_usd=quantize(Decimal(rng.randint(0, 10**9)) / Decimal(10**12)) if served else Decimal(0),
        pricing_basis="tokens",
    )


async def test_write_is_idempotent_and_round_trips(store: Store) -> None:
    rng = random.Random(1)
    records = [make_record(i, rng) for i in range(50)]
    assert await store.write(records[:30]) == 30
    assert await store.write(records) == 20  # the first 30 are already there
    assert await store.write(records) == 0
    stored = await store.records(None, None, 1000)
    assert stored == records[::-1]  # newest first


async def test_spend_matches_a_brute_force_aggregate(store: Store) -> None:
    rng = random.Random(7)
    records = [make_record(i, rng) for i in range(400)]
    await store.write(records)
    query = SpendQuery(group_by=("team", "deployment"), start=1_800_000_050.0, end=1_800_000_350.0)
    report = await store.spend(query)
    window = [r for r in records if 1_800_000_050.0 <= r.started_at < 1_800_000_350.0]
    groups: dict[tuple[str | None, ...], list[UsageRecord]] = {}
    for r in window:
        groups.setdefault((r.team, r.deployment), []).append(r)
    assert {row.group for row in report.rows} == set(groups)
    for row in report.rows:
        members = groups[row.group]
        assert row.requests == len(members)
        assert row.errors == sum(1 for r in members if r.outcome is not Outcome.SERVED)
        assert row.input_tokens == sum(r.input_tokens for r in members)
        assert row.output_tokens == sum(r.output_tokens for r in members)
        assert row.items == sum(r.items for r in members)
        assert row.cost_usd == sum((r.cost_usd for r in members), Decimal(0))
        latencies = sorted(r.latency_ms for r in members)
        # Whole minutes come from the rollups: percentiles within the histogram's documented error.
        assert row.p50_ms == pytest.approx(nearest_rank(latencies, 0.5), rel=HISTOGRAM_ERROR)
        assert row.p95_ms == pytest.approx(nearest_rank(latencies, 0.95), rel=HISTOGRAM_ERROR)
    assert report.total.requests == len(window)
    assert report.total.cost_usd == sum((r.cost_usd for r in window), Decimal(0))
    assert sum((row.cost_usd for row in report.rows), Decimal(0)) == report.total.cost_usd
    costs = [row.cost_usd for row in report.rows]
    assert costs == sorted(costs, reverse=True)


async def test_spend_filters_and_empty_windows(store: Store) -> None:
    rng = random.Random(3)
    records = [make_record(i, rng) for i in range(100)]
    await store.write(records)
    prod = await store.spend(SpendQuery(group_by=("team",), where=(("environment", "prod"),)))
    assert prod.total.requests == sum(1 for r in records if r.environment == "prod")
    empty = await store.spend(SpendQuery(group_by=("team",), start=0.0, end=1.0))
    assert empty.rows == () and empty.total.requests == 0 and empty.total.cost_usd == 0
    assert empty.total.p50_ms is None


async def test_keys_add_list_revoke(store: Store) -> None:
    identity = KeyIdentity(
        key_id="abc123",
        team="search",
        project="ranking",
        environment="prod",
        name="ci",
        tags=(("tier", "gold"),),
        deployments=frozenset({"chat"}),
        allow_client_tags=True,
    )
    key = StoredKey(identity, salt="s", secret_hash="h" * 64, created_at=1_800_000_000.0)
    await store.add_key(key)
    assert await store.list_keys() == [key]
    assert await store.revoke_key("abc123", 1_800_000_100.0)
    assert not await store.revoke_key("abc123", 1_800_000_200.0)  # already revoked
    assert not await store.revoke_key("nope", 1_800_000_200.0)
    (revoked,) = await store.list_keys()
    assert revoked.revoked_at == 1_800_000_100.0
    assert await store.ping()


async def test_reopening_does_not_reapply_migrations(store: Store, tmp_path: Path) -> None:
    await store.write([make_record(1, random.Random(0))])
    await store.open() if isinstance(store, SQLiteStore) else None
    assert len(await store.records(None, None, 10)) == 1


async def _pages(store: Store, start: float | None, end: float | None, limit: int) -> list[UsageRecord]:
    seen: list[UsageRecord] = []
    cursor: RecordCursor | None = None
    while True:
        page = await store.records(start, end, limit, before=cursor)
        assert len(page) <= limit
        seen += page
        if len(page) < limit:
            return seen
        cursor = RecordCursor.of(page[-1])


async def test_records_page_newest_first_through_equal_timestamps(store: Store) -> None:
    # A burst: 30 records on 4 instants, so pages break in the middle of equal timestamps.
    rng = random.Random(11)
    records = [replace(make_record(i, rng), started_at=1_800_000_000.1 + (i % 4) * 0.25) for i in range(30)]
    rng.shuffle(records)
    await store.write(records)
    newest_first = sorted(records, key=lambda r: (r.started_at, r.request_id), reverse=True)
    for limit in (1, 3, 7, 29, 30, 31):
        seen = await _pages(store, None, None, limit)
        assert [r.request_id for r in seen] == [r.request_id for r in newest_first], limit
    # A window and a cursor together: only the window's records, still none lost or repeated.
    start, end = 1_800_000_000.35, 1_800_000_000.85
    inside = [r.request_id for r in newest_first if start <= r.started_at < end]
    assert len(inside) == 15
    assert [r.request_id for r in await _pages(store, start, end, 4)] == inside


async def test_a_cursor_past_the_oldest_record_gives_an_empty_page(store: Store) -> None:
    rng = random.Random(5)
    await store.write([make_record(i, rng) for i in range(3)])
    oldest = (await store.records(None, None, 10))[-1]
    assert await store.records(None, None, 10, before=RecordCursor.of(oldest)) == []
