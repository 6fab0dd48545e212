"""The SQLite ledger in tmp_path: idempotent writes, exact spend totals, nearest-rank, keys."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from costwarden.domain.keys import KeyIdentity, StoredKey
from costwarden.domain.latency_histogram import RELATIVE_ERROR
from costwarden.domain.money import ZERO
from costwarden.domain.record import Outcome, UsageRecord
from costwarden.domain.report import SpendQuery, SpendRow, nearest_rank
from costwarden.storage.sqlite import SQLiteStore
from tests.unit.storage.sample import record

HISTOGRAM_ERROR = RELATIVE_ERROR * (1 + 1e-9)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    ledger = SQLiteStore(str(tmp_path / "ledger" / "costwarden.db"))
    await ledger.open()
    yield ledger
    await ledger.close()


async def test_write_is_idempotent_on_request_id(store: SQLiteStore) -> None:
    assert await store.write([record("a"), record("b")]) == 2
    assert await store.write([record("a")]) == 0
    assert await store.write([record("b"), record("c"), record("c")]) == 1
    assert await store.write([]) == 0
    stored = await store.records(None, None, 100)
    assert sorted(r.request_id for r in stored) == ["a", "b", "c"]


async def test_the_first_write_wins(store: SQLiteStore) -> None:
    await store.write([record("a", cost_usd=Decimal("0.5"))])
    await store.write([record("a", cost_usd=Decimal("9"))])
    report = await store.spend(SpendQuery(group_by=()))
    assert report.total.cost_usd == Decimal("0.5")
    assert report.total.requests == 1


async def test_records_round_trip(store: SQLiteStore) -> None:
    original = [
        record("a"),
        record(
            "b",
            started_at=1_700_000_001.5,
            key_id=None,
            team=None,
            project=None,
            environment=None,
            tags={},
            deployment=None,
            model=None,
            stream=True,
            status=401,
            upstream_status=None,
            outcome=Outcome.REJECTED,
            error_code="missing_api_key",
            upstream_ms=None,
            cost_usd=ZERO,
            pricing_basis="free",
        ),
    ]
    await store.write(original)
    stored = await store.records(None, None, 10)
    assert [r.request_id for r in stored] == ["b", "a"]
    for got, want in zip(stored, original[::-1], strict=True):
        assert got.to_json_dict() == want.to_json_dict()
        assert got.cost_usd == want.cost_usd


async def test_records_window_and_limit(store: SQLiteStore) -> None:
    await store.write([record(f"r{i}", started_at=float(i)) for i in range(10)])
    assert [r.request_id for r in await store.records(3.0, 6.0, 100)] == ["r5", "r4", "r3"]
    assert [r.request_id for r in await store.records(None, None, 2)] == ["r9", "r8"]  # newest first


async def test_a_second_open_is_a_no_op(tmp_path: Path) -> None:
    path = str(tmp_path / "twice.db")
    for _ in range(2):
        ledger = SQLiteStore(path)
        await ledger.open()
        await ledger.write([record("a")])
        assert await ledger.ping()
        await ledger.close()
    again = SQLiteStore(path)
    await again.open()
    try:
        assert len(await again.records(None, None, 10)) == 1
    finally:
        await again.close()


TEAMS = ("search", "ads", None)
MODELS = ("gpt", "llama", "iris")
OUTCOMES = (Outcome.SERVED, Outcome.SERVED, Outcome.SERVED, Outcome.REJECTED, Outcome.FAILED)


def random_records(rng: random.Random, n: int) -> list[UsageRecord]:
    return [
        record(
            f"req-{i}",
            started_at=1_700_000_000 + rng.randrange(0, 1000),
            team=rng.choice(TEAMS),
            model=rng.choice(MODELS),
            environment=rng.choice(("prod", "dev")),
            outcome=rng.choice(OUTCOMES),
            input_tokens=rng.randrange(0, 10_000),
            output_tokens=rng.randrange(0, 5_000),
            cached_tokens=rng.randrange(0, 100),
            items=rng.randrange(0, 20),
            latency_ms=float(rng.randrange(1, 400)) + rng.choice((0.0, 0.5, 0.25)),
            cost_usd=Decimal(rng.randrange(0, 10**7)).scaleb(-9),
        )
        for i in range(n)
    ]


def brute_force(records: list[UsageRecord], group: tuple[str | None, ...]) -> SpendRow:
    latencies = sorted(r.latency_ms for r in records)
    return SpendRow(
        group=group,
        requests=len(records),
        errors=sum(1 for r in records if r.outcome is not Outcome.SERVED),
        input_tokens=sum(r.input_tokens for r in records),
        output_tokens=sum(r.output_tokens for r in records),
        cached_tokens=sum(r.cached_tokens for r in records),
        items=sum(r.items for r in records),
        cost_usd=sum((r.cost_usd for r in records), ZERO),
        p50_ms=nearest_rank(latencies, 0.5),
        p95_ms=nearest_rank(latencies, 0.95),
    )


def exact(row: SpendRow) -> SpendRow:
    """The row without its percentiles: everything a rollup must reproduce exactly."""
    return replace(row, p50_ms=None, p95_ms=None)


def matches(query: SpendQuery, r: UsageRecord) -> bool:
    if query.start is not None and r.started_at < query.start:
        return False
    if query.end is not None and r.started_at >= query.end:
        return False
    return all(getattr(r, name) == value for name, value in query.where)


@pytest.mark.parametrize("seed", range(4))
async def test_spend_matches_brute_force(store: SQLiteStore, seed: int) -> None:
    rng = random.Random(seed)
    records = random_records(rng, rng.randrange(1, 250))
    await store.write(records)
    queries = [
        SpendQuery(group_by=()),
        SpendQuery(group_by=("team",)),
        SpendQuery(group_by=("team", "model")),
        SpendQuery(group_by=("model",), start=1_700_000_200, end=1_700_000_700),
        SpendQuery(group_by=("outcome",), where=(("environment", "prod"),)),
        SpendQuery(group_by=("team",), where=(("model", "llama"), ("environment", "dev")), start=1_700_000_100),
    ]
    for query in queries:
        selected = [r for r in records if matches(query, r)]
        groups: dict[tuple[str | None, ...], list[UsageRecord]] = defaultdict(list)
        for r in selected:
            groups[tuple(getattr(r, g) for g in query.group_by)].append(r)
        expected = [brute_force(rs, g) for g, rs in groups.items()]
        expected.sort(key=lambda row: (-row.cost_usd, -row.requests, tuple(g or "" for g in row.group)))
        report = await store.spend(query)
        assert report.query == query
        assert [exact(row) for row in report.rows] == [exact(row) for row in expected], query
        for got, want in zip((*report.rows, report.total), (*expected, brute_force(selected, ())), strict=True):
            assert exact(got) == exact(want)
            # Whole minutes are read from rollups: percentiles within the histogram's documented error.
            assert got.p50_ms == pytest.approx(want.p50_ms, rel=HISTOGRAM_ERROR)
            assert got.p95_ms == pytest.approx(want.p95_ms, rel=HISTOGRAM_ERROR)
        assert report.total.cost_usd == sum((row.cost_usd for row in report.rows), ZERO)  # reconciles exactly


async def test_spend_of_an_empty_ledger(store: SQLiteStore) -> None:
    report = await store.spend(SpendQuery(group_by=("team",)))
    assert report.rows == ()
    assert report.total == SpendRow(group=(), requests=0, cost_usd=ZERO, p50_ms=None, p95_ms=None)


async def test_spend_is_exact_to_the_nano_dollar(store: SQLiteStore) -> None:
    # A float sum of 0.1 ten times is not 1.0; the ledger's sum must be.
    await store.write([record(f"r{i}", cost_usd=Decimal("0.1")) for i in range(10)])
    await store.write([record("tiny", cost_usd=Decimal("0.000000001"))])
    total = (await store.spend(SpendQuery(group_by=()))).total
    assert total.cost_usd == Decimal("1.000000001")


def key(key_id: str, created_at: float, identity: KeyIdentity | None = None) -> StoredKey:
    ident = identity or KeyIdentity(key_id=key_id, team="search", project="ranker", environment="prod")
    return StoredKey(ident, salt="00ff", secret_hash="ab" * 32, created_at=created_at)


async def test_keys_round_trip_in_creation_order(store: SQLiteStore) -> None:
    identity = KeyIdentity(
        key_id="k2",
        team="ads",
        project="bidder",
        environment="staging",
        name="ci",
        tags=(("cost_center", "cc-1"), ("tier", "gold")),
        deployments=frozenset({"gpt", "iris"}),
        allow_client_tags=True,
    )
    restricted = key("k2", 20.0, identity)
    plain = key("k1", 10.0)
    await store.add_key(restricted)
    await store.add_key(plain)
    assert await store.list_keys() == [plain, restricted]


async def test_revoke_a_key(store: SQLiteStore) -> None:
    await store.add_key(key("k1", 10.0))
    await store.add_key(key("k2", 11.0))
    assert await store.revoke_key("k1", 99.5) is True
    assert await store.revoke_key("k1", 120.0) is False  # already revoked: the first time stands
    assert await store.revoke_key("nope", 120.0) is False
    by_id = {k.identity.key_id: k for k in await store.list_keys()}
    assert by_id["k1"].revoked_at == 99.5
    assert by_id["k2"].revoked_at is None
