"""Monthly partitions of the PostgreSQL ledger (storage/partitions.py): converting an existing
ledger keeps every record and report; a replayed spool, across a month boundary, still inserts
each record once; retention drops whole months and keeps the rollups; a record outside every
month lands in the default partition instead of failing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from costwarden.cli.main import app
from costwarden.domain.record import Outcome, UsageRecord
from costwarden.domain.report import SpendQuery
from costwarden.services.retention import prune_ledger
from costwarden.storage import partitions
from costwarden.storage.postgres import PostgresStore
from tests.conftest import scratch_database
from tests.contract.test_rollups import assert_matches, usage

MONTH = datetime(2027, 3, 1, tzinfo=UTC).timestamp()  # a month boundary (March 2027 starts here)
FEB, MARCH, APRIL = datetime(2027, 2, 1, tzinfo=UTC).timestamp(), MONTH, datetime(2027, 4, 1, tzinfo=UTC).timestamp()


@pytest.fixture
def url() -> Iterator[str]:
    """A database of its own: a conversion changes the ledger of every later test otherwise."""
    with scratch_database("costwarden_parts") as url:
        yield url


@pytest.fixture
async def store(url: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(url)
    await store.open()
    yield store
    await store.close()


def around_the_boundary(n: int, offset: int = 0) -> list[UsageRecord]:
    """`n` records in the last and first minutes of a month boundary (half on each side)."""
    return [
        usage(offset + i, MONTH + (i - n // 2) * 1.5 + 0.25, ("ads", "search")[i % 2], "chat", Outcome.SERVED, 9.0, i)
        for i in range(n)
    ]


def spread(first: float, days: int, per_day: int, offset: int) -> list[UsageRecord]:
    return [
        usage(offset + i, first + i * 86_400 / per_day, "ads", "chat", Outcome.SERVED, 3.0, i + 1)
        for i in range(days * per_day)
    ]


async def partition_names(store: PostgresStore) -> set[str]:
    return {r["relname"] for r in await store.pool.fetch(partitions._PARTITIONS)}


async def test_converting_a_ledger_keeps_every_record_and_report(store: PostgresStore) -> None:
    records = spread(FEB, 59, 20, 0)  # February and March
    assert await store.write(records) == len(records)
    whole = SpendQuery(group_by=("team", "key_id"), start=FEB, end=APRIL)
    before = await store.spend(whole)
    assert await store.partition() == len(records)
    assert await store.partition() == -1  # once
    names = await partition_names(store)
    assert {"ledger_default", "ledger_y2027m02", "ledger_y2027m03"} <= names
    assert await store.pool.fetchval("SELECT COUNT(*) FROM ONLY ledger_y2027m02") == 28 * 20
    assert await store.pool.fetchval("SELECT COUNT(*) FROM ledger_default") == 0
    after = await store.spend(whole)
    assert after.rows == before.rows
    assert_matches(after, records)
    kept = await store.records(None, None, 5000)
    assert sorted(r.request_id for r in kept) == sorted(r.request_id for r in records)
    indexes = {
        r["indexname"] for r in await store.pool.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'ledger'")
    }
    assert {"ledger_pkey", "ledger_started_at", "ledger_team", "ledger_key", "ledger_by_batch"} <= indexes


async def test_a_replayed_spool_after_a_month_boundary_inserts_each_record_once(store: PostgresStore, url: str) -> None:
    assert await store.partition() == 0  # a new, empty ledger
    records = around_the_boundary(40)
    assert await store.write(records[:25]) == 25
    # Another gateway (opened before the conversion or after) replays the whole spool.
    other = PostgresStore(url)
    await other.open()
    try:
        assert await other.write(records) == 15
        assert await other.write(records) == 0
    finally:
        await other.close()
    assert await store.write(records[10:]) == 0
    await store.fold(10_000)
    assert await store.pool.fetchval("SELECT COUNT(*) FROM ledger_y2027m02") == 20
    assert await store.pool.fetchval("SELECT COUNT(*) FROM ledger_y2027m03") == 20
    for q in (
        SpendQuery(group_by=("team",), start=MONTH - 3600, end=MONTH + 3600),
        SpendQuery(group_by=(), start=FEB, end=APRIL),
    ):
        assert_matches(await store.spend(q), records)


async def test_a_gateway_opened_before_the_conversion_keeps_writing_once(url: str) -> None:
    early = PostgresStore(url)
    await early.open()  # finds an unpartitioned ledger
    converter = PostgresStore(url)
    await converter.open()
    try:
        records = around_the_boundary(10)
        assert await early.write(records[:4]) == 4
        assert await converter.partition() == 4
        assert await early.write(records) == 6  # its merge's conflict target changed: it finds out
        assert await early.write(records) == 0
        assert_matches(await early.spend(SpendQuery(group_by=(), start=FEB, end=APRIL)), records)
    finally:
        await early.close()
        await converter.close()


async def test_retention_drops_whole_months_and_keeps_the_rollups(store: PostgresStore) -> None:
    assert await store.partition() == 0
    records = spread(FEB - 10 * 86_400, 40, 10, 0)  # 10 days of January, February, 2 days of March
    assert await store.write(records) == len(records)
    await store.fold(10_000)
    names = await partition_names(store)
    assert {"ledger_y2027m01", "ledger_y2027m02", "ledger_y2027m03"} <= names
    cutoff = MARCH + 86_400  # all of January and February go whole, March's first day row by row
    assert await prune_ledger(store, cutoff, batch=7) == 10 * 10 + 28 * 10 + 10
    names = await partition_names(store)
    assert "ledger_y2027m01" not in names and "ledger_y2027m02" not in names
    assert "ledger_y2027m03" in names
    kept = await store.records(None, None, 1000)
    assert sorted(r.request_id for r in kept) == sorted(r.request_id for r in records if r.started_at >= cutoff)
    month = SpendQuery(group_by=("team",), start=FEB, end=MARCH)  # whole days: from the rollups
    assert_matches(await store.spend(month), records)


async def test_a_record_outside_every_month_lands_in_the_default_partition(store: PostgresStore) -> None:
    assert await store.partition() == 0
    far = [usage(1, 4_000_000_000.0, "ads", "chat", Outcome.SERVED, 1.0, 1)]  # 2096: no partition
    ancient = [usage(2, -86_400.0 * 365, "ads", "chat", Outcome.SERVED, 1.0, 2)]
    assert await store.write(far + ancient) == 2
    assert await store.write(far + ancient) == 0
    assert await store.pool.fetchval("SELECT COUNT(*) FROM ledger_default") == 2


async def test_opening_a_partitioned_ledger_creates_the_months_ahead(store: PostgresStore, url: str) -> None:
    assert await store.partition() == 0
    await store.pool.execute(
        "DROP TABLE IF EXISTS " + ", ".join(sorted(await partition_names(store) - {"ledger_default"}))
    )
    reopened = PostgresStore(url)
    await reopened.open()
    await reopened.close()
    expected = {
        partitions.name(*m)
        for m in partitions.months(datetime.now(UTC).timestamp(), datetime.now(UTC).timestamp() + 90 * 86_400)
    }
    assert expected <= await partition_names(store)


def test_months_and_their_bounds() -> None:
    assert partitions.months(FEB - 1, MARCH) == [(2027, 1), (2027, 2), (2027, 3)]
    assert partitions.bounds(2027, 12) == (
        datetime(2027, 12, 1, tzinfo=UTC).timestamp(),
        datetime(2028, 1, 1, tzinfo=UTC).timestamp(),
    )
    assert partitions.month_of(MARCH - 1e-6) == (2027, 2)
    assert partitions.month_of(float(2**64)) == (9999, 12)


def test_the_partition_command_converts_once(tmp_path: Path) -> None:
    async def fill(url: str) -> None:
        store = PostgresStore(url)
        await store.open()
        await store.write(around_the_boundary(6))
        await store.close()

    with scratch_database("costwarden_parts") as url:
        asyncio.run(fill(url))
        config = tmp_path / "costwarden.yaml"
        config.write_text(
            "deployments: [{name: chat, protocol: openai, upstream: 'http://127.0.0.1:9'}]\n"
            f"storage: {{ledger: '{url}'}}\n"
        )
        first = CliRunner().invoke(app, ["ledger", "partition", "-c", str(config)])
        assert first.exit_code == 0, first.output
        assert "6 records moved" in first.output
        again = CliRunner().invoke(app, ["ledger", "partition", "-c", str(config)])
        assert again.exit_code == 0 and "partitioned by month already" in again.output


async def test_storage_partition_monthly_leaves_a_filled_ledger_to_the_command(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    plain = PostgresStore(url)
    await plain.open()
    assert await plain.write(around_the_boundary(4)) == 4
    await plain.close()
    filled = PostgresStore(url, partition="monthly")
    await filled.open()  # holds records: left as it is, with a warning naming the command
    try:
        async with filled.pool.acquire() as conn:
            assert not await partitions.is_partitioned(conn)
        assert await filled.write(around_the_boundary(6)) == 2
    finally:
        await filled.close()
    assert "costwarden ledger partition" in caplog.text


async def test_storage_partition_monthly_partitions_an_empty_ledger_at_open(url: str) -> None:
    store = PostgresStore(url, partition="monthly")
    await store.open()
    try:
        assert "ledger_default" in await partition_names(store)
        records = around_the_boundary(8)
        assert await store.write(records) == 8
        assert await store.write(records) == 0
        assert await store.pool.fetchval("SELECT COUNT(*) FROM ledger_y2027m02") == 4
    finally:
        await store.close()
