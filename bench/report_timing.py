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
import statistics
import time

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
    times = []
    for _ in range(args.repeat):
        begin = time.perf_counter()
        report = await store.spend(query)
        times.append(time.perf_counter() - begin)
    await store.close()
    print(f"{args.backend} {args.days:g} d by {args.by}: median {statistics.median(times):.3f} s of {len(times)} "
          f"(min {min(times):.3f}), {len(report.rows)} rows, {report.total.requests} requests, "
          f"cost {report.total.cost_usd}")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
