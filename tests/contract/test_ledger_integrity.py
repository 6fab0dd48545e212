"""Ledger integrity, on every adapter: a value the database cannot store is refused as data
(RecordRejected, never mistaken for an outage), the quarantine keeps what was refused, and a long
read never holds up a write or a ping."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from decimal import Decimal

import orjson
import pytest

from costwarden.domain.limits import INT64_MAX, MAX_COST_USD, fit
from costwarden.domain.quarantine import Quarantined, quarantined
from costwarden.domain.record import UsageRecord
from costwarden.domain.report import SpendQuery
from costwarden.ports import RecordRejected, Store
from costwarden.storage.postgres import PostgresStore
from costwarden.storage.sqlite import SQLiteStore
from tests.unit.storage.sample import record

POISON = [
    pytest.param({"items": 2**64 - 1}, id="items-2^64-1"),
    pytest.param({"items": 2**63}, id="items-2^63"),
    pytest.param({"input_tokens": 10**20}, id="tokens-10^20"),
    pytest.param({"cost_usd": Decimal(10**17)}, id="cost-10^17-usd"),
]
# PostgreSQL only: SQLite's INTEGER holds any int64 and its TEXT holds NUL.
POSTGRES_POISON = [
    pytest.param({"status": 2**40}, id="status-2^40"),
    pytest.param({"model": "a\x00b"}, id="model-with-nul"),
    pytest.param({"tags": {"k": "v\x00"}}, id="tag-with-nul"),
]


@pytest.mark.parametrize("poison", POSTGRES_POISON)
async def test_what_sqlite_keeps_postgres_refuses_as_data(store: Store, poison: dict[str, object]) -> None:
    bad = replace(record("bad"), **poison)  # type: ignore[arg-type]
    if isinstance(store, SQLiteStore):
        assert await store.write([bad]) == 1
    else:
        with pytest.raises(RecordRejected):
            await store.write([bad])
    assert await store.ping()


@pytest.mark.parametrize("poison", POISON)
async def test_a_value_that_does_not_fit_is_refused_as_data(store: Store, poison: dict[str, object]) -> None:
    bad = replace(record("bad"), **poison)  # type: ignore[arg-type]
    with pytest.raises(RecordRejected):
        await store.write([record("good-1"), bad, record("good-2")])
    # The batch is one transaction: nothing of it is stored, and the store still works.
    assert await store.records(None, None, 10) == []
    assert await store.write([record("good-1"), record("good-2")]) == 2
    assert await store.ping()


@pytest.mark.parametrize("poison", [*POISON, *POSTGRES_POISON])
async def test_fit_makes_every_poison_storable(store: Store, poison: dict[str, object]) -> None:
    fitted = fit(replace(record("bad"), **poison))  # type: ignore[arg-type]
    assert await store.write([fitted]) == 1
    (stored,) = await store.records(None, None, 10)
    assert stored.items <= INT64_MAX and stored.cost_usd <= MAX_COST_USD


async def test_the_boundary_values_fit(store: Store) -> None:
    edge = record("edge", items=INT64_MAX, input_tokens=INT64_MAX, cost_usd=MAX_COST_USD, status=2**31 - 1)
    assert await store.write([edge]) == 1
    (stored,) = await store.records(None, None, 10)
    assert (stored.items, stored.input_tokens, stored.cost_usd) == (INT64_MAX, INT64_MAX, MAX_COST_USD)


async def test_quarantine_is_durable_and_listed_newest_first(store: Store) -> None:
    weird = replace(record("q-1"), items=2**70, model="x\x00y\ud800")  # not even valid JSON as is
    entries = [quarantined(weird, "NumericValueOutOfRange: items", 10.0), quarantined(record("q-2"), "r2", 20.0)]
    await store.quarantine(entries)
    listed = await store.list_quarantine(10)
    assert [e.request_id for e in listed] == ["q-2", "q-1"]
    assert listed[1] == Quarantined("q-1", 10.0, "NumericValueOutOfRange: items", entries[0].record)
    assert str(2**70) in listed[1].record  # the whole record is kept, its odd values included
    assert UsageRecord.from_json_dict(orjson.loads(listed[0].record)) == record("q-2")


async def _hold_a_read(store: Store, seconds: float) -> None:
    """A report that takes `seconds` on the store's read path (a month of records, say)."""
    if isinstance(store, SQLiteStore):
        await store._read(lambda conn: time.sleep(seconds))  # the reader thread is busy that long
    else:
        assert isinstance(store, PostgresStore)
        await store.reads.execute("SELECT pg_sleep($1)", seconds)


async def test_a_long_report_does_not_hold_up_writes_or_pings(store: Store) -> None:
    await store.write([record("warm")])
    await store.spend(SpendQuery(group_by=()))
    # More slow reports at once than a shared pool of 4 connections could have served.
    reports = [asyncio.create_task(_hold_a_read(store, 3.0)) for _ in range(5)]
    await asyncio.sleep(0.3)
    started = time.monotonic()
    assert await store.ping()
    assert await store.write([record(f"during-{i}") for i in range(100)]) == 100
    await store.list_keys()  # key refresh
    elapsed = time.monotonic() - started
    await asyncio.gather(*reports)
    assert elapsed < 1.5, f"ping + flush + key refresh waited {elapsed:.2f} s behind a report"
