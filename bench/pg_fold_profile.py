#!/usr/bin/env python
"""Where a PostgreSQL rollup fold's database time goes: pending rows per record and EXPLAIN ANALYZE
of each base cube's fold statement, per upsert.

    PYTHONPATH=src:bench .venv/bin/python bench/pg_fold_profile.py                 # sparse (30 days)
    PYTHONPATH=src:bench .venv/bin/python bench/pg_fold_profile.py --rate 70000    # fleet

Writes `--records` records (bench/scale.py's) through `PostgresStore.write` into a fresh database,
counts the pending rows (`rollup_delta`) per cube, then runs each base cube's fold of up to
`--limit` rows under EXPLAIN (ANALYZE) and prints the time of each node that writes a table (one per
cube and grain), the taking of the rows and the grouping into cells. The fold's statements are the
tree's own (`rollup_fold._FOLDS`), so the same script profiles any tree on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from pg_write import fresh_store
from scale import DAY, records

from costwarden.storage import rollup_fold


def _nodes(plan: dict[str, Any], depth: int = 0) -> list[tuple[int, dict[str, Any]]]:
    out = [(depth, plan)]
    for child in plan.get("Plans", []):
        out += _nodes(child, depth + 1)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=30_000)
    parser.add_argument("--rate", type=float, default=0.0, help="records per second the records span (0: 30 days)")
    parser.add_argument("--limit", type=int, default=10_000)
    parser.add_argument("--postgres-admin", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument("--postgres-db", default="cw_pending_profile")
    args = parser.parse_args()
    span = args.records / args.rate if args.rate else 30 * DAY
    batch = list(records(args.records, time.time(), 500, 20, 20, 14, span))
    store = await fresh_store(args.postgres_admin, args.postgres_db)
    try:
        for i in range(0, len(batch), 1000):
            await store.write(batch[i : i + 1000])
        for cube, rows in await store.pool.fetch("SELECT cube, COUNT(*) FROM rollup_delta GROUP BY cube ORDER BY cube"):
            print(f"cube {cube}: {rows:,} pending rows, {rows / args.records:.2f} a record")
        for cube, sql in enumerate(rollup_fold._FOLDS):
            async with store.pool.acquire() as conn:
                tr = conn.transaction()
                await tr.start()  # rolled back: each cube's fold profiled from the same pending rows
                text = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", args.limit)
                plan = json.loads(text)[0]
                taken = await conn.fetchval("SELECT COUNT(*) FROM rollup_delta WHERE cube = $1", cube)
                print(f"fold of cube {cube}: {plan['Execution Time']:.1f} ms ({len(sql):,} characters; left {taken:,})")
                for depth, node in _nodes(plan["Plan"]):
                    name = node["Node Type"]
                    if name in ("ModifyTable", "Aggregate", "Sort") or depth <= 1:
                        target = node.get("Relation Name", node.get("Subplan Name", node.get("Strategy", "")))
                        print(
                            f"  {'  ' * depth}{name:12} {target:20} rows {node['Actual Rows']:>8,} "
                            f"{node['Actual Total Time']:9.1f} ms"
                        )
                await tr.rollback()
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
