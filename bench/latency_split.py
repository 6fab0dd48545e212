"""Where a request's added latency goes at a low rate (issue 11): before the gateway's clock starts,
inside it (its own time and the upstream's), and after it stops.

The fast engine with metering and the SQLite ledger (bench/chain_time.py's config, upstream and
client) gets `--requests` requests one after the other, `--gap-ms` apart, on one keep-alive
connection. For each, the client's wall time of sending and of having the answer is matched with
the ledger's record (`started_at`, `latency_ms`, `upstream_ms`): the medians of

* the client's request to the upstream alone (direct),
* the client's request through the gateway,
* send -> `started_at` (wake-up, read, parse, dispatch),
* `latency_ms` (the chain's own time and the upstream's),
* `started_at + latency_ms` -> answer (the record, the spool, the response write, the client's wake-up),

and the gateway's CPU per request over the phase (all its threads), plus its idle CPU before.

    PYTHONPATH=$PWD/src .venv/bin/python bench/latency_split.py --runs 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import chain_time as ct


async def one_run(tree: Path, requests: int, gap_s: float) -> dict[str, float]:
    upstream = ct.free_port()
    up = ct.start_upstream(upstream)
    with tempfile.TemporaryDirectory(prefix="latency-split-") as tmp:
        workdir = Path(tmp)
        port = ct.free_port()
        proc = ct.start_gateway(tree, ct.config(workdir, port, upstream), workdir / "gateway.log", None)
        try:
            await ct.wait_ready(port, proc)
            (client,) = await ct.connect(port, 1)
            (direct,) = await ct.connect(upstream, 1)
            for _ in range(300):  # warm-up
                await client.call()
            ledger = workdir / "ledger.db"
            await ct.settle(ledger)
            after = ct.max_rowid(ledger)
            idle0 = ct.cpu_seconds(proc.pid)
            await asyncio.sleep(3)
            idle = (ct.cpu_seconds(proc.pid) - idle0) / 3
            direct_s: list[float] = []
            sends: list[tuple[float, float]] = []
            cpu0 = ct.cpu_seconds(proc.pid)
            for _ in range(requests):
                t0 = time.perf_counter()
                await direct.call()
                direct_s.append(time.perf_counter() - t0)
                await asyncio.sleep(gap_s)
                t0 = time.time()
                await client.call()
                sends.append((t0, time.time()))
                await asyncio.sleep(gap_s)
            cpu = (ct.cpu_seconds(proc.pid) - cpu0) / requests
            await ct.settle(ledger)
            with contextlib.closing(sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)) as db:
                rows = db.execute(
                    "SELECT started_at, latency_ms, upstream_ms FROM ledger WHERE rowid > ? ORDER BY rowid", (after,)
                ).fetchall()
        finally:
            proc.terminate()
            proc.wait(60)
            up.terminate()
            up.wait(10)
    if len(rows) != requests:
        raise RuntimeError(f"{len(rows)} records for {requests} requests")
    md = statistics.median
    return {
        "direct_us": round(md(direct_s) * 1e6),
        "through_gateway_us": round(md([(b - a) * 1e6 for a, b in sends])),
        "before_start_us": round(md([(s - a) * 1e6 for (a, _), (s, _, _) in zip(sends, rows, strict=True)])),
        "latency_us": round(md([r[1] * 1e3 for r in rows])),
        "upstream_us": round(md([r[2] * 1e3 for r in rows])),
        "after_end_us": round(md([(b - s - lat / 1e3) * 1e6 for (_, b), (s, lat, _) in zip(sends, rows, strict=True)])),
        "cpu_us_per_request": round(cpu * 1e6),
        "idle_cpu_percent": round(idle * 100, 2),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--gap-ms", type=float, default=5.0)
    parser.add_argument("--tree", default=str(ct.ROOT))
    args = parser.parse_args()
    for run in range(args.runs):
        print(json.dumps({"run": run, **await one_run(Path(args.tree), args.requests, args.gap_ms / 1000)}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
