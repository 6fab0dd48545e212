"""A team budget's rebuild (its counter spans grouped by outcome, `Governor._charged`) reads only
that team's rollup cells, on SQLite and PostgreSQL: once the cube it reads holds an organisation's
cells, the planner seeks them through the team index by itself (on SQLite with the statistics of the
sampled ANALYZE a store runs when it opens), so the read grows with the team's cells, not every
team's. (Its totals equal the raw ledger's: tests/contract/test_budget_seed.py.)"""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from typing import Any

from costwarden.domain.budget import Budget, BudgetScope, counter_spans
from costwarden.domain.record import Outcome
from costwarden.domain.report import SpendQuery
from costwarden.domain.rollup import DAY, HOUR, Cube, cube_for
from costwarden.domain.window import Window
from costwarden.ports import Store
from costwarden.storage.postgres import PostgresStore
from costwarden.storage.span_reads import spans_sql
from costwarden.storage.spend_sql import POSTGRES, SQLITE
from costwarden.storage.sqlite import SQLiteStore
from tests.contract.test_rollups import BASE, clear, second

TEAMS, DAYS = 100, 10
NOW = BASE + DAYS * 86_400 + 5_000.5
BUDGET = Budget("t", BudgetScope.of({"team": "t007"}), Window.rolling(DAYS * 86_400, buckets=2 * DAYS), Decimal(1))
QUERY = SpendQuery(("outcome",), where=BUDGET.scope.dimensions, percentiles=False)
SPANS = [(start, end) for _, start, end in counter_spans(BUDGET, NOW)]


# Hours from a day before the budget's window to its current bucket (open, and on a day's edge: it
# reads day and week cells)
HOURS = list(range(int(SPANS[0][0]) - DAY, int(SPANS[-1][0]), HOUR))


def cells(cube: Cube) -> list[tuple[Any, ...]]:
    """An organisation's hour cells in `cube` over the budget's days: a request a team, hour and
    outcome (grain, bucket, dim_key, the cube's dimensions, requests). Over 1,000 cells a team, as
    at 1M records a month: more than SQLite's sampled ANALYZE looks at in an index."""
    rows = []
    for hour in HOURS:
        for t in range(TEAMS):
            for outcome in Outcome:
                dims = {d: "x" for d in cube.dimensions} | {"team": f"t{t:03d}", "outcome": outcome.value}
                values = tuple(dims[d] for d in cube.dimensions)
                rows.append((HOUR, hour, json.dumps(values), *values, 1))
    return rows


async def fill(store: Store, cube: Cube) -> None:
    columns = ("grain", "bucket", "dim_key", *cube.dimensions, "requests")
    rows = cells(cube)
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as conn:  # one transaction
            marks = ", ".join("?" * len(columns))
            conn.executemany(f"INSERT INTO {cube.table} ({', '.join(columns)}) VALUES ({marks})", rows)
        conn.close()
    else:
        assert isinstance(store, PostgresStore)
        await store.pool.copy_records_to_table(cube.table, records=rows, columns=columns)
        await store.pool.execute(f"ANALYZE {cube.table}")  # what autovacuum does after a fill


def scans(plan: dict[str, Any], table: str) -> list[dict[str, Any]]:
    """The plan's scans of `table`, with the bitmap index scans under a bitmap heap scan of it."""
    if plan.get("Relation Name") == table:
        return [plan, *bitmaps(plan)]
    return [node for child in plan.get("Plans", []) for node in scans(child, table)]


def bitmaps(plan: dict[str, Any]) -> list[dict[str, Any]]:
    below = [node for child in plan.get("Plans", []) for node in [child, *bitmaps(child)]]
    return [node for node in below if node["Node Type"].startswith("Bitmap")]


async def test_a_team_budgets_rebuild_seeks_its_teams_cells(store: Store) -> None:
    await clear(store)
    cube = cube_for(QUERY)
    await fill(store, cube)
    reopened = await second(store)  # a gateway's start: the store opens (SQLite: ANALYZE), then rebuilds
    try:
        reports = await reopened.spend_spans(QUERY, SPANS)
        counted = [(h, outcome) for h in HOURS if h >= SPANS[0][0] for outcome in Outcome]
        assert sum(r.total.requests for r in reports) == len(counted)  # t007's
        if isinstance(reopened, SQLiteStore):
            sql, params = spans_sql(QUERY, SPANS, SQLITE, "sqlite")
            steps = await reopened._read(lambda conn: conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall())
            searches = [step[3] for step in steps if f" {cube.table} " in step[3]]
            assert len(searches) == len(SPANS) + 1  # each span, and the open one's coarser grains
            assert all(f"USING INDEX {cube.table}_team (team=? AND grain=?" in s for s in searches), searches
        else:
            assert isinstance(reopened, PostgresStore)
            sql, params = spans_sql(QUERY, SPANS, POSTGRES, "postgres")
            async with reopened.reads.acquire() as conn, conn.transaction():
                await conn.execute("SET LOCAL jit = off")  # as spans_postgres runs it
                found = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *params)
            visited = scans(json.loads(found)[0]["Plan"], cube.table)
            removed = sum(n.get(f"Rows Removed by {by}", 0) for n in visited for by in ("Filter", "Index Recheck"))
            kept = sum(n["Actual Rows"] * n["Actual Loops"] for n in visited if "Relation Name" in n)
            assert (kept, removed) == (len(counted), 0), [n["Node Type"] for n in visited]  # t007's cells, no other
    finally:
        await reopened.close()
