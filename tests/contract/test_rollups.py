"""Rollups against the raw ledger, on SQLite and PostgreSQL: for random record sets written in
random batches (late records, replayed spools, racing writers) and random windows across minute,
hour and day edges, every total a report reads from rollups equals the brute-force total exactly,
and its percentiles are within the histogram's documented error of nearest rank."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costwarden.domain.latency_histogram import CEILING_MS, FLOOR_MS, RELATIVE_ERROR
from costwarden.domain.money import from_nanos
from costwarden.domain.record import Outcome, UsageRecord
from costwarden.domain.report import GROUP_DIMENSIONS, SpendQuery, SpendReport, nearest_rank
from costwarden.domain.rollup import CUBES, DERIVED
from costwarden.domain.usage import UNIT_FIELDS
from costwarden.ports import Store
from costwarden.services.reports import report_json
from costwarden.storage.postgres import PostgresStore
from costwarden.storage.sqlite import SQLiteStore

BASE = 1_800_000_000.0  # not a UTC day start: minute, hour and day edges all differ
WEEK_EDGE = 489_600  # BASE + this is a week's start (weeks start on Thursdays, 00:00 UTC)
QUARTER_EDGE = 14_400  # BASE + this is a 6-hour cell's start (00:00, 06:00, 12:00 or 18:00 UTC)
EDGES = [
    0, 59, 60, 3599, 3600, 3660, QUARTER_EDGE - 1, QUARTER_EDGE, QUARTER_EDGE + 7_260, 43_200,
    86_399 - 1_800_000_000 % 86_400, 86_400, 90_000, 172_800, WEEK_EDGE - 1, WEEK_EDGE, WEEK_EDGE + 7 * 86_400 + 1,
]  # fmt: skip
AT = st.builds(lambda e, d: BASE + e + d, st.sampled_from(EDGES), st.sampled_from([0.0, -1e-6, 0.25, -0.5, 30.0]))
BOUND = st.one_of(st.none(), AT)


def usage(
    i: int, at: float, team: str | None, deployment: str, outcome: Outcome, latency: float, n: int
) -> UsageRecord:
    served = outcome is Outcome.SERVED
    return UsageRecord(
        request_id=f"r{i}",
        started_at=at,
        ended_at=at + latency / 1000,
        key_id=None if team is None else f"k-{team}",
        team=team,
        project=None if team is None else "p",
        environment="prod" if n % 2 else "dev",
        tags={},
        deployment=deployment,
        protocol="openai" if deployment != "iris" else "v2",
        endpoint="/v1/chat/completions",
        method="POST",
        model=deployment,
        stream=False,
        status=200 if served else 429,
        upstream_status=200 if served else None,
        outcome=outcome,
        error_code=None if served else "budget_exhausted",
        latency_ms=latency,
        upstream_ms=None,
        input_tokens=n * 7,
        output_tokens=n * 3,
        cached_tokens=n % 5,
        items=n % 4,
        cost_usd=from_nanos(n * 123_456_789 if served else 0),
        reasoning_tokens=n % 3,
        images=n % 11,
        audio_ms=n * 13,
        characters=n * 5 % 1000,
        documents=n % 101,
    )


RECORD = st.tuples(
    AT,
    st.sampled_from(["ads", "search", None]),
    st.sampled_from(["chat", "iris"]),
    st.sampled_from(list(Outcome)),
    st.one_of(st.floats(0.0, 700_000.0, allow_nan=False), st.sampled_from([0.05, 0.1, 1.0, 250.0])),
    st.integers(0, 10**6),
)
QUERY = st.tuples(
    BOUND,
    BOUND,
    st.booleans(),
    st.lists(st.sampled_from(GROUP_DIMENSIONS), max_size=2, unique=True),
    st.sampled_from(
        [(), (("team", "ads"),), (("outcome", "served"), ("deployment", "chat")), (("key_id", "k-search"),)]
    ),
)


def query_of(
    start: float | None, end: float | None, percentiles: bool, groups: list[str], where: tuple[tuple[str, str], ...]
) -> SpendQuery:
    if start is not None and end is not None and end <= start:
        start, end = end, start + (start - end or 1.0)
    return SpendQuery(group_by=tuple(groups), start=start, end=end, where=where, percentiles=percentiles)


def assert_matches(report: SpendReport, stored: Sequence[UsageRecord]) -> None:
    q = report.query
    window = [
        r
        for r in stored
        if (q.start is None or q.start <= r.started_at)
        and (q.end is None or r.started_at < q.end)
        and all(str(getattr(r, k)) == v for k, v in q.where)
    ]
    groups: dict[tuple[str | None, ...], list[UsageRecord]] = {}
    for r in window:
        groups.setdefault(tuple(_dim(r, g) for g in q.group_by), []).append(r)
    if q.group_by:
        assert {row.group for row in report.rows} == set(groups)
    for row in (*report.rows, report.total):
        members = window if row is report.total or not q.group_by else groups[row.group]
        errors = sum(r.outcome not in (Outcome.SERVED, Outcome.QUEUED) for r in members)  # a 202 is no error
        assert (row.requests, row.errors) == (len(members), errors)
        assert (row.input_tokens, row.output_tokens, row.cached_tokens, row.items) == (
            sum(r.input_tokens for r in members),
            sum(r.output_tokens for r in members),
            sum(r.cached_tokens for r in members),
            sum(r.items for r in members),
        )
        for unit in UNIT_FIELDS:  # the modal units (migration 0017): pending, folded and raw alike
            assert getattr(row, unit) == sum(getattr(r, unit) for r in members), unit
        assert row.cost_usd == sum((r.cost_usd for r in members), Decimal(0))
        latencies = sorted(r.latency_ms for r in members)
        for got, fraction in ((row.p50_ms, 0.5), (row.p95_ms, 0.95)):
            exact = nearest_rank(latencies, fraction) if q.percentiles else None  # totals only: no percentiles
            assert (got is None) == (exact is None)
            if got is not None and exact is not None:
                # The report says how exact its percentiles are: 0 (read raw) or the histogram's bound.
                assert report.percentile_error in (0.0, RELATIVE_ERROR)
                if report.percentile_error:
                    exact = min(exact, CEILING_MS)  # documented: larger latencies count in the last bin
                    assert abs(got - exact) <= max(RELATIVE_ERROR * (1 + 1e-9) * exact, FLOOR_MS / 2 + 1e-9)
                else:
                    assert got == exact
    assert report_json(report)["percentile_relative_error"] == report.percentile_error


def _dim(r: UsageRecord, name: str) -> str | None:
    value = getattr(r, name)
    return None if value is None else str(value)


async def execute(store: Store, statements: Sequence[str]) -> None:
    """Run `statements` on the store's database behind its back (to empty it, or make it look older)."""
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path, isolation_level=None) as conn:
            for sql in statements:
                conn.execute(sql)
        conn.close()
    else:
        assert isinstance(store, PostgresStore)
        pg = await asyncpg.connect(store.dsn)
        try:
            for sql in statements:
                await pg.execute(sql)
        finally:
            await pg.close()


async def count(store: Store, sql: str) -> int:
    """The one number `sql` selects from the store's database (`SELECT COUNT(*) ...`)."""
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path, isolation_level=None) as conn:
            found = int(conn.execute(sql).fetchone()[0])
        conn.close()
        return found
    assert isinstance(store, PostgresStore)
    return int(await store.pool.fetchval(sql))


async def clear(store: Store) -> None:
    tables = ("ledger", *(cube.table for cube in CUBES), "rollup_delta")
    if isinstance(store, SQLiteStore):
        await execute(store, [f"DELETE FROM {table}" for table in tables])
    else:
        await execute(store, [f"TRUNCATE {', '.join(tables)}"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    records=st.lists(RECORD, min_size=1, max_size=40),
    batches=st.lists(st.lists(st.integers(0, 39), max_size=12), min_size=1, max_size=6),
    queries=st.lists(QUERY, min_size=1, max_size=6),
    folds=st.lists(st.sampled_from([0, 0, 1, 3, 10_000]), min_size=1, max_size=6),
)
async def test_reports_from_rollups_equal_the_raw_ledger(
    store: Store,
    records: list[tuple[float, str | None, str, Outcome, float, int]],
    batches: list[list[int]],
    queries: list[tuple[float | None, float | None, bool, list[str], tuple[tuple[str, str], ...]]],
    folds: list[int],
) -> None:
    await clear(store)
    pool = [usage(i, *fields) for i, fields in enumerate(records)]
    stored: dict[str, UsageRecord] = {}
    for n, batch in enumerate(batches):  # batches arrive in any time order and repeat records
        chosen = [pool[i % len(pool)] for i in batch]
        new = {r.request_id: r for r in reversed(chosen) if r.request_id not in stored}
        assert await store.write(chosen) == len(new)
        stored.update(new)
        if limit := folds[n % len(folds)]:  # some pending cells folded, some not
            await fold(store, limit)
        report = await store.spend(query_of(*queries[n % len(queries)]))
        assert_matches(report, list(stored.values()))
    assert await store.write(list(stored.values())) == 0  # a replayed spool adds nothing
    for q in queries:
        assert_matches(await store.spend(query_of(*q)), list(stored.values()))
    await fold(store, 10_000)  # everything folded: the same totals
    for q in queries:
        assert_matches(await store.spend(query_of(*q)), list(stored.values()))


async def fold(store: Store, limit: int) -> int:
    assert isinstance(store, SQLiteStore | PostgresStore)
    return await store.fold(limit)


async def pending(store: Store) -> int:
    return await count(store, "SELECT COUNT(*) FROM rollup_delta")


async def test_racing_folders_and_writers_count_each_record_once(store: Store) -> None:
    records = [
        usage(i, BASE + i * 13.25, ("ads", "search", None)[i % 3], ("chat", "iris")[i % 2], list(Outcome)[i % 3], i, i)
        for i in range(900)
    ]
    other = await second(store)
    try:
        writes = [s.write(records[k : k + 120]) for k in range(0, 900, 60) for s in (store, other)]
        folds = [s.fold(limit) for s in (store, other) for limit in (7, 50, 200, 5)]  # type: ignore[attr-defined]
        results = await asyncio.gather(*writes, *folds)
        assert sum(results[: len(writes)]) == 900
        while await fold(other, 3) or await fold(store, 1000):
            pass
    finally:
        await other.close()
    assert await pending(store) == 0
    for groups in ((), ("team",), ("key_id", "outcome")):
        q = SpendQuery(group_by=groups, start=BASE - 0.5, end=BASE + 900 * 13.25 + 1)
        assert_matches(await store.spend(q), records)


async def test_a_write_stores_pending_cells_and_a_fold_moves_them_once(store: Store) -> None:
    records = [usage(i, BASE + 30 + i * 0.5, "ads", "chat", Outcome.SERVED, 10.0, 2 * i) for i in range(100)]
    assert await store.write(records) == 100
    # 100 records, one pending cell per minute of the org cube (50 s across a minute edge: two)
    # and one key-day cell: the cells add records up before they are stored.
    assert await pending(store) == 3
    assert await store.write(records) == 0
    assert await pending(store) == 3  # a replay stores no cells
    assert await fold(store, 10_000) == 3
    assert await fold(store, 10_000) == 0
    assert_matches(await store.spend(SpendQuery(group_by=("team",), start=BASE - 60, end=BASE + 120)), records)


async def second(store: Store) -> Store:
    other: Store = SQLiteStore(store.path) if isinstance(store, SQLiteStore) else PostgresStore(store.dsn)  # type: ignore[attr-defined]
    await other.open()
    return other


async def test_racing_writers_replaying_the_same_records_count_each_once(store: Store) -> None:
    records = [
        usage(i, BASE + i * 7.5, ("ads", "search")[i % 2], "chat", Outcome.SERVED, 1.0 + i, i) for i in range(600)
    ]
    other = await second(store)
    try:
        written = await asyncio.gather(
            *(s.write(records[k : k + 150]) for k in range(0, 600, 50) for s in (store, other))
        )
        assert sum(written) == 600
    finally:
        await other.close()
    for groups in ((), ("team",)):
        assert_matches(await store.spend(SpendQuery(group_by=groups, start=BASE - 0.5, end=BASE + 4000.5)), records)


async def test_a_ledger_from_before_rollups_is_backfilled_when_opened(store: Store) -> None:
    records = [
        without_units(usage(i, BASE + i * 97.3, "ads", "iris", (Outcome.SERVED, Outcome.FAILED)[i % 9 == 0], i / 3, i))
        for i in range(900)
    ]
    await store.write(records[:500])
    # Make the database look like one written before migration 0006 (and the rollup migrations after
    # it: 0017, 0020, 0022, 0023), then open it again.
    merge = [] if isinstance(store, SQLiteStore) else ["DROP FUNCTION costwarden_hist_merge(jsonb, jsonb)"]
    drop = [f"DROP TABLE {cube.table}" for cube in CUBES]
    drop += [*merge, "DELETE FROM costwarden_schema WHERE version IN (6, 20, 22, 23)"]
    await execute(store, [*drop, *before_units("ledger", "rollup_delta")])
    reopened = await second(store)
    try:
        assert await reopened.write(records) == 400  # new records after the backfill still count once
        for q in (
            SpendQuery(group_by=("outcome",)),
            SpendQuery(group_by=("team",), start=BASE + 3600, end=BASE + 86_400),
        ):
            assert_matches(await reopened.spend(q), records)
    finally:
        await reopened.close()


@pytest.mark.parametrize("latency", [0.0, 1e-9, 1e15])
async def test_extreme_latencies_are_counted_not_refused(store: Store, latency: float) -> None:
    records = [usage(i, BASE + 60 * i, "ads", "chat", Outcome.SERVED, latency, i) for i in range(3)]
    assert await store.write(records) == 3
    assert_matches(await store.spend(SpendQuery(group_by=("team",), start=BASE, end=BASE + 180)), records)


async def test_a_ledger_rolled_up_before_weeks_gets_its_week_cells_from_its_day_cells(store: Store) -> None:
    records = [
        without_units(
            usage(i, BASE + i * 3_001.7, ("ads", "search")[i % 2], "chat", list(Outcome)[i % 3], 1.0 + i % 500, i)
        )
        for i in range(700)  # 24 days, across three week edges
    ]
    assert await store.write(records) == 700
    while await fold(store, 10_000):
        pass
    drop = ["DELETE FROM rollup WHERE grain = 604800", "DROP TABLE rollup_delta"]
    drop += [f"DROP TABLE {cube.table}" for cube in DERIVED]
    drop.append("DELETE FROM costwarden_schema WHERE version IN (12, 20, 22, 23, 25)")  # 25: SQLite only
    drop.extend(before_units("ledger", "rollup", "rollup_key"))
    if isinstance(store, PostgresStore):  # histograms as they were before 0023: jsonb objects
        drop.extend(json_histograms("rollup", "rollup_key"))
    await execute(store, drop)
    reopened = await second(store)
    try:
        for q in (
            SpendQuery(group_by=("team", "outcome"), start=BASE + 0.5, end=BASE + 24 * 86_400),
            SpendQuery(group_by=("deployment",), start=BASE + WEEK_EDGE, end=BASE + WEEK_EDGE + 14 * 86_400),
        ):
            assert_matches(await reopened.spend(q), records)
        assert await reopened.write(records) == 0
    finally:
        await reopened.close()
    assert await count(store, "SELECT COUNT(*) FROM rollup WHERE grain = 604800") > 0  # week cells


def json_histograms(*tables: str) -> list[str]:
    """Undo migration 0023's packing on PostgreSQL `tables`: each histogram back to {"bin": count}."""
    unpack = (
        "CREATE FUNCTION pg_temp.unpacked(h NUMERIC) RETURNS JSONB LANGUAGE sql AS $$ "
        "SELECT COALESCE(jsonb_object_agg(i, c), '{}') FROM (SELECT i, trunc(mod(div(h, 10::numeric ^ (12 * i)), "
        "10::numeric ^ 12)) AS c FROM generate_series(0, length(h::text) / 12) AS i) AS f WHERE c > 0 $$"
    )
    return [unpack] + [
        f"ALTER TABLE {t} ALTER COLUMN latency DROP DEFAULT, ALTER COLUMN latency TYPE JSONB USING "
        f"pg_temp.unpacked(latency), ALTER COLUMN latency SET DEFAULT '{{}}'"
        for t in tables
    ]


def without_units(record: UsageRecord) -> UsageRecord:
    """A record as one written before migration 0017 (no modal units)."""
    return replace(record, reasoning_tokens=0, images=0, audio_ms=0, characters=0, documents=0)


def before_units(*tables: str) -> list[str]:
    """Undo migration 0017 on `tables` (those a test keeps), so opening the store applies it again."""
    drops = [f"ALTER TABLE {t} DROP COLUMN {c}" for t in tables for c in UNIT_FIELDS]
    return [*drops, "DELETE FROM costwarden_schema WHERE version = 17"]
