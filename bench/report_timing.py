#!/usr/bin/env python
"""Time one report shape on an existing ledger, with whichever tree is on PYTHONPATH, so two trees
can be compared on the same data (e.g. a ledger filled by bench/scale.py):

    PYTHONPATH=<tree>/src .venv/bin/python bench/report_timing.py sqlite /tmp/costwarden-scale/scale.db
    PYTHONPATH=<tree>/src .venv/bin/python bench/report_timing.py postgres postgresql://127.0.0.1:5432/costwarden_scale

Prints the median of `--repeat` runs of `store.spend` for the last `--days` days grouped by
`--by` (with p50/p95), and the report's request total (to check both trees agree).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path

from costwarden.domain.report import SpendQuery
from costwarden.storage.postgres import PostgresStore
from costwarden.storage.sqlite import SQLiteStore


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("backend", choices=("sqlite", "postgres"))
    parser.add_argument("url")
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--by", default="team,deployment")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--now", type=float, default=0.0, help="the window's end (default: now)")
    args = parser.parse_args()
    store = SQLiteStore(args.url) if args.backend == "sqlite" else PostgresStore(args.url)
    await store.open()
    end = args.now or time.time()
    query = SpendQuery(group_by=tuple(g for g in args.by.split(",") if g), start=end - args.days * 86_400, end=end)
    times, cpus = [], []
    for _ in range(args.repeat):
        before = await backends(store)
        begin, cpu = time.perf_counter(), time.process_time()
        report = await store.spend(query)
        times.append(time.perf_counter() - begin)
        after = await backends(store)
        server = sum(t - before.get(pid, 0.0) for pid, t in after.items())
        cpus.append(time.process_time() - cpu + server)
    await store.close()
    print(f"{args.backend} {args.days:g} d by {args.by}: median {statistics.median(times):.3f} s of {len(times)} "
          f"(min {min(times):.3f}), CPU median {statistics.median(cpus):.3f} s (this process and the database's "
          f"backends), {len(report.rows)} rows, {report.total.requests} requests, "
          f"cost {report.total.cost_usd}")  # fmt: skip


async def backends(store: SQLiteStore | PostgresStore) -> dict[int, float]:
    """CPU seconds so far of the PostgreSQL backends serving this database (none for SQLite)."""
    if not isinstance(store, PostgresStore):
        return {}
    rows = await store.pool.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
    return {r["pid"]: proc_cpu(r["pid"]) for r in rows}


def proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    asyncio.run(main())
