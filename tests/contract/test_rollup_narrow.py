"""The narrow rollups (migration 0020: per team, per deployment and outcome, per key with week cells),
on SQLite and PostgreSQL: the dashboard's month-long reads from them equal the raw ledger exactly,
with cells folded, pending, replayed and late; and a ledger rolled up before 0020 gets them from its
folded cells when opened (a gateway upgraded in place shows the same numbers), as one from before
0022 gets its team cube again with the outcome."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import asyncpg
import pytest

from costwarden.domain.record import Outcome, UsageRecord
from costwarden.domain.report import SpendQuery
from costwarden.domain.rollup import DERIVED, KEY_TOTALS, WEEK, cube_for
from costwarden.domain.rollup import TEAMS as TEAM_CUBE
from costwarden.ports import Store
from costwarden.storage.migrations import migrations, statements
from costwarden.storage.postgres import PostgresStore
from costwarden.storage.sqlite import SQLiteStore
from tests.contract.test_rollups import (
    BASE,
    WEEK_EDGE,
    assert_matches,
    count,
    execute,
    fold,
    json_histograms,
    second,
    usage,
)

TEAMS = ("ads", "search", None)
DEPLOYMENTS = ("chat", "iris", "embed")


def month(n: int) -> list[UsageRecord]:
    """`n` records over 30 days from a week's start - 3 days: four week edges, three keys a team."""
    records = []
    for i in range(n):
        team = TEAMS[i % 3]
        r = usage(i, BASE + WEEK_EDGE - 3 * 86_400 + i * 30 * 86_400 / n, team, DEPLOYMENTS[i % 7 % 3],
                  list(Outcome)[i % 5 % len(Outcome)], 0.5 + (i * 37) % 900, i)  # fmt: skip
        records.append(r if team is None else replace(r, key_id=f"k-{team}-{i % 4}"))
    return records


def panels(start: float, end: float) -> list[SpendQuery]:
    """The dashboard's reads: top drivers, latency per deployment, spend per team; a team's view."""
    return [
        SpendQuery(("key_id",), start, end, percentiles=False),
        SpendQuery(("deployment",), start, end),
        SpendQuery(("project",), start, end, percentiles=False),
        SpendQuery(("team",), start, end, percentiles=False),
        SpendQuery(("key_id",), start, end, (("team", "ads"),), percentiles=False),
        SpendQuery((), start, end, (("key_id", "k-search-1"),), percentiles=False),
        SpendQuery(("outcome",), start, end),
    ]


async def test_month_long_panels_from_narrow_cells_equal_the_raw_ledger(store: Store) -> None:
    records = month(900)
    stored: set[str] = set()

    async def write(batch: list[UsageRecord]) -> None:
        new = {r.request_id for r in batch} - stored
        assert await store.write(batch) == len(new)
        stored.update(new)

    await write([r for i, r in enumerate(records) if i % 7 and i % 2])
    assert await fold(store, 10_000) > 0
    await write(records[600:])
    await fold(store, 5)  # some cells folded, the rest pending
    await write(records)  # the rest late, out of order
    await write(records[::7])  # a replayed spool: nothing
    start, end = BASE + WEEK_EDGE - 2.5 * 86_400 + 17.25, BASE + WEEK_EDGE + 26 * 86_400 + 0.5
    for query in panels(start, end):
        assert cube_for(query) in DERIVED
        assert_matches(await store.spend(query), records)
        report = await store.spend(replace(query, percentiles=False))
        if query.group_by:
            assert [r.group for r in await store.top(query, 2)] == [r.group for r in report.rows[:2]]
    await fold(store, 10_000)
    assert await key_week_cells(store) > 0  # whole weeks of keys come from week cells
    for query in panels(start, end):
        assert_matches(await store.spend(query), records)


async def key_week_cells(store: Store) -> int:
    return await count(store, f"SELECT COUNT(*) FROM {KEY_TOTALS.table} WHERE grain = {WEEK}")


async def test_a_ledger_rolled_up_before_the_narrow_cubes_gets_them_from_its_cells(store: Store) -> None:
    records = month(700)
    assert await store.write(records[:400]) == 400
    while await fold(store, 10_000):
        pass
    assert await store.write(records[400:500]) == 100  # pending when the gateway is upgraded
    drop = [f"DROP TABLE {cube.table}" for cube in DERIVED]
    drop.append("DELETE FROM costwarden_schema WHERE version IN (20, 22, 23)")  # 0022 and 0023 came after 0020
    if isinstance(store, PostgresStore):
        drop.extend(json_histograms("rollup", "rollup_key"))
    await execute(store, drop)
    reopened = await second(store)
    try:
        start, end = BASE + WEEK_EDGE - 3 * 86_400 + 0.5, BASE + WEEK_EDGE + 27 * 86_400
        for query in panels(start, end):
            assert_matches(await reopened.spend(query), records[:500])
        assert await key_week_cells(reopened) > 0
        assert await reopened.write(records) == 200  # after the upgrade: new ones once, replays not
        await fold(reopened, 10_000)
        for query in panels(start, end):
            assert_matches(await reopened.spend(query), records)
    finally:
        await reopened.close()


async def test_a_team_cube_from_before_its_outcome_is_added_up_again_when_opened(store: Store) -> None:
    """Migration 0022 empties 0020's team cube (no outcome), adds the outcome and adds it up again
    from the org cube's folded cells; what it held before goes, pending cells stay pending."""
    records = month(700)
    assert await store.write(records[:400]) == 400
    while await fold(store, 10_000):
        pass
    assert await store.write(records[400:500]) == 100  # pending when the gateway is upgraded
    dialect = "sqlite" if isinstance(store, SQLiteStore) else "postgres"
    before = next(m for m in migrations(dialect) if m.version == 20)
    stale = "INSERT INTO rollup_team (grain, bucket, dim_key, team, requests) VALUES (86400, {b}, 'ads', 'ads', 999)"
    # A ledger from before 0022 is from before 0023 too: PostgreSQL's histograms as `jsonb`.
    older = json_histograms("rollup", "rollup_key", "rollup_deployment", "rollup_key_total")
    older = older if dialect == "postgres" else []
    await execute(store, [
        "DROP TABLE rollup_team",
        *(s for s in statements(before.sql) if "rollup_team " in s),  # its shape before 0022
        stale.format(b=int(BASE + WEEK_EDGE) // 86_400 * 86_400),
        *older,
        "DELETE FROM costwarden_schema WHERE version IN (22, 23)",
    ])  # fmt: skip
    reopened = await second(store)
    try:
        start, end = BASE + WEEK_EDGE - 3 * 86_400 + 0.5, BASE + WEEK_EDGE + 27 * 86_400
        team_reads = [
            SpendQuery(("outcome",), start, end, (("team", "ads"),), percentiles=False),  # a team budget's rebuild
            SpendQuery(("team", "outcome"), start, end, percentiles=False),
        ]
        for query in [*team_reads, *panels(start, end)]:
            assert_matches(await reopened.spend(query), records[:500])
        assert cube_for(team_reads[0]) is TEAM_CUBE
        with pytest.raises((sqlite3.IntegrityError, asyncpg.NotNullViolationError)):  # an older gateway's fold
            await execute(store, [stale.format(b=int(BASE + WEEK_EDGE) // 86_400 * 86_400 + 86_400)])
        assert await reopened.write(records) == 200
        await fold(reopened, 10_000)
        for query in team_reads:
            assert_matches(await reopened.spend(query), records)
    finally:
        await reopened.close()
