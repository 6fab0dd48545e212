#!/usr/bin/env python
"""A budget rebuild's ledger read, alone, on an existing ledger (e.g. `bench/scale.py`'s 1M):

    .venv/bin/python bench/budget_reads.py sqlite /tmp/costwarden-scale/scale.db
    .venv/bin/python bench/budget_reads.py postgres postgresql://127.0.0.1:5432/costwarden_scale

For rolling-30d budgets (60 buckets of 12 hours, as the config makes them) of several scopes (the
whole organisation, the busiest team, a median team, a project, a key, a deployment), what the
governor's rebuild reads: `store.spend_spans` of the budget's 60 counter spans, grouped by outcome,
totals only (`Governor._charged`). Prints and saves the median of `--repeat` warm reads per scope
and, on PostgreSQL, the rollup rows the statement's scans returned and removed by their filters
(`EXPLAIN (ANALYZE)`: how many cells it visited to keep how many).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from costwarden.domain.budget import Budget, BudgetScope, counter_spans
from costwarden.domain.report import SpendQuery
from costwarden.domain.window import Window
from costwarden.storage.postgres import PostgresStore
from costwarden.storage.span_reads import spans_sql
from costwarden.storage.spend_sql import POSTGRES
from costwarden.storage.sqlite import SQLiteStore

SCOPES: dict[str, dict[str, str]] = {
    "global": {},
    "team (busiest)": {"team": "team-000"},
    "team (median)": {"team": "team-250"},
    "project": {"project": "proj-000-0"},
    "team+environment": {"team": "team-000", "environment": "staging"},
    "key": {"key_id": "key-000-0"},
    "deployment": {"deployment": "dep-00"},
}


def _scan_rows(plan: dict[str, Any], tables: set[str]) -> tuple[int, int]:
    """(rows returned, rows removed by a filter) of the plan's scans of `tables`, in all loops."""
    kept = removed = 0
    if plan.get("Relation Name") in tables:
        loops = plan.get("Actual Loops", 1)
        kept += plan.get("Actual Rows", 0) * loops
        removed += (plan.get("Rows Removed by Filter", 0) + plan.get("Rows Removed by Index Recheck", 0)) * loops
    for child in plan.get("Plans", []):
        k, r = _scan_rows(child, tables)
        kept, removed = kept + k, removed + r
    return kept, removed


async def cells(store: PostgresStore, query: SpendQuery, spans: list[tuple[float, float | None]]) -> dict[str, Any]:
    sql, params = spans_sql(query, spans, POSTGRES, "postgres")
    async with store.reads.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL jit = off")
        found = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *params)
    plan = json.loads(found)[0]["Plan"]
    kept, removed = _scan_rows(plan, {"rollup", "rollup_team", "rollup_deployment", "rollup_key", "rollup_key_total"})
    return {"cells_kept": kept, "cells_removed": removed}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("backend", choices=("sqlite", "postgres"))
    parser.add_argument("ledger", help="the SQLite file or the PostgreSQL URL")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--now", type=float, default=0.0, help="the rebuild's time (default: now)")
    parser.add_argument("--label", default="")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    store: SQLiteStore | PostgresStore
    store = SQLiteStore(args.ledger) if args.backend == "sqlite" else PostgresStore(args.ledger)
    await store.open()
    now = args.now or time.time()
    rows = []
    try:
        for name, scope in SCOPES.items():
            budget = Budget(name, BudgetScope.of(scope), Window.rolling(30 * 86_400, buckets=60), Decimal(1))
            spans = [(start, end) for _, start, end in counter_spans(budget, now)]
            query = SpendQuery(("outcome",), where=budget.scope.dimensions, percentiles=False)
            reports = await store.spend_spans(query, spans)  # warm
            times = []
            for _ in range(args.repeat):
                begin = time.perf_counter()
                await store.spend_spans(query, spans)
                times.append(time.perf_counter() - begin)
            row: dict[str, Any] = {
                "scope": name,
                "median_ms": statistics.median(times) * 1000,
                "runs_ms": [t * 1000 for t in times],
                "requests": sum(r.total.requests for r in reports),
            }
            if isinstance(store, PostgresStore):
                row.update(await cells(store, query, spans))
            rows.append(row)
            extra = ""
            if "cells_kept" in row:
                extra = f", cells kept/removed {row['cells_kept']:,}/{row['cells_removed']:,}"
            print(f"{args.label:>8} {name:18} {row['median_ms']:8.1f} ms  ({row['requests']:,} requests{extra})")
    finally:
        await store.close()
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "now": now, "rows": rows}, indent=2) + "\n")  # noqa: ASYNC240


if __name__ == "__main__":
    asyncio.run(main())
