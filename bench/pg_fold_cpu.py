#!/usr/bin/env python
"""The PostgreSQL backend's CPU per pending row of fold statements, variants of the SQL compared on the
same pending rows (each run rolled back), alternately.

    # a database holding pending rows: bench/pg_fold_profile.py leaves its own (--postgres-db)
    PYTHONPATH=src:bench .venv/bin/python bench/pg_fold_profile.py --rate 70000 --postgres-db cw_fleet
    # each variant: one file per base cube, DIR/<name>_<cube>.sql (a fold statement, $1 the limit), e.g.
    PYTHONPATH=<tree>/src .venv/bin/python -c "from costwarden.storage.rollup_fold import _FOLDS; \
        [open(f'DIR/old_{c}.sql', 'w').write(s) for c, s in enumerate(_FOLDS)]"
    .venv/bin/python bench/pg_fold_cpu.py cw_fleet 0 DIR old new     # cube 0, variants old and new

Each repetition runs every variant in turn: `--folds` folds of `--limit` rows in one transaction,
rolled back, timing the backend's CPU (from /proc: PostgreSQL on this machine) and the wall clock.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path

import asyncpg

TICK = os.sysconf("SC_CLK_TCK")


def backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("db")
    parser.add_argument("cube", type=int)
    parser.add_argument("dir")
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=10_000)
    parser.add_argument("--host", default="postgresql://127.0.0.1:5432")
    args = parser.parse_args()
    sqls = {v: (Path(args.dir) / f"{v}_{args.cube}.sql").read_text() for v in args.variants}
    conn = await asyncpg.connect(f"{args.host}/{args.db}")
    pid = await conn.fetchval("SELECT pg_backend_pid()")
    cpu: dict[str, list[float]] = {v: [] for v in args.variants}
    wall: dict[str, list[float]] = {v: [] for v in args.variants}
    for _ in range(args.reps):
        for v in args.variants:
            tr = conn.transaction()
            await tr.start()
            c0, w0 = backend_cpu(pid), time.perf_counter()
            rows = 0
            for _ in range(args.folds):
                rows += await conn.fetchval(sqls[v], args.limit)
            c1, w1 = backend_cpu(pid), time.perf_counter()
            await tr.rollback()
            cpu[v].append((c1 - c0) * 1e6 / rows)
            wall[v].append((w1 - w0) * 1e6 / rows)
    await conn.close()
    for v in args.variants:
        print(
            f"{args.db} cube {args.cube} {v:12} CPU µs a row, median {statistics.median(cpu[v]):6.1f} "
            f"(wall {statistics.median(wall[v]):6.1f}), runs {[round(x) for x in cpu[v]]}"
        )


if __name__ == "__main__":
    asyncio.run(main())
