#!/usr/bin/env python
"""PostgreSQL ledger write rate through the product's store, against a bare COPY in the same run.

    .venv/bin/python bench/pg_write.py                        # 50,000 records, 3 runs, sparse
    .venv/bin/python bench/pg_write.py --rate 70000           # fleet traffic: cells repeat
    PYTHONPATH=<older tree>/src .venv/bin/python bench/pg_write.py --label before   # the same, older code

Each run starts from a fresh database and writes the same records (`bench/scale.py`'s: 500 teams,
10,000 keys, 20 deployments) three ways, timing wall and CPU (this process and the PostgreSQL
backends serving it, from /proc: the machine is shared, so CPU is the figure that holds):

- `ceiling`: the batches' rows (the store's own encoding) COPYed into an unindexed table shaped
  like the ledger, one COPY per batch: what no idempotent, rolled-up write can beat;
- `write`: `PostgresStore.write` per batch (COPY into staging, merge, pending cells);
- `fold`: folding every pending cell into the rollups (what the store does in the background).

`sustained` is records per second of write and fold together. Medians of `--runs` runs are printed
and saved (bench/results/pg_write_<label>.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import asyncpg
from scale import DAY, Clock, drain, make_store, records

from costwarden.domain.money import quantize
from costwarden.domain.record import LEDGER_COLUMNS, UsageRecord
from costwarden.storage.ledger_codec import record_values
from costwarden.storage.postgres import PostgresStore


async def fresh_store(admin_dsn: str, db: str) -> PostgresStore:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {db}")
    finally:
        await admin.close()
    store = make_store(PostgresStore, admin_dsn.rsplit("/", 1)[0] + f"/{db}")
    assert isinstance(store, PostgresStore)
    await store.open()
    return store


async def one_run(batches: list[list[UsageRecord]], args: argparse.Namespace) -> dict[str, float]:
    n = sum(len(b) for b in batches)
    store = await fresh_store(args.postgres_admin, args.postgres_db)
    try:
        await store.pool.execute("CREATE TABLE bench_bare (LIKE ledger)")  # no index, no key

        async def bare() -> None:
            for batch in batches:
                rows = [record_values(r, r.stream, quantize(r.cost_usd)) for r in batch]
                await store.pool.copy_records_to_table("bench_bare", records=rows, columns=LEDGER_COLUMNS)

        async def write() -> None:
            for batch in batches:
                assert await store.write(batch) == len(batch)

        clocks = {"ceiling": Clock(store), "write": Clock(store), "fold": Clock(store)}
        await clocks["ceiling"].run(bare())
        await clocks["write"].run(write())
        await clocks["fold"].run(drain(store))
        assert await store.pool.fetchval("SELECT SUM(requests) FROM rollup WHERE grain = 60") == n
    finally:
        await store.close()
    out = {}
    for name, clock in clocks.items():
        out[f"{name}_records_per_s"] = n / clock.wall
        out[f"{name}_cpu_us_per_record"] = (clock.cpu + clock.server) * 1e6 / n
        out[f"{name}_server_cpu_us_per_record"] = clock.server * 1e6 / n
    write_fold = clocks["write"].wall + clocks["fold"].wall
    out["sustained_records_per_s"] = n / write_fold
    out["sustained_cpu_us_per_record"] = out["write_cpu_us_per_record"] + out["fold_cpu_us_per_record"]
    out["sustained_vs_ceiling_wall"] = out["sustained_records_per_s"] / out["ceiling_records_per_s"]
    out["sustained_vs_ceiling_cpu"] = out["ceiling_cpu_us_per_record"] / out["sustained_cpu_us_per_record"]
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0.0, help="records per second the records span (0: 30 days)")
    parser.add_argument("--label", default="now")
    parser.add_argument("--postgres-admin", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument("--postgres-db", default="costwarden_pg_write")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    span = args.records / args.rate if args.rate else 30 * DAY
    all_records = list(records(args.records, time.time(), 500, 20, 20, 14, span))
    batches = [all_records[i : i + args.batch] for i in range(0, len(all_records), args.batch)]
    runs = [await one_run(batches, args) for _ in range(args.runs)]
    medians = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    for k, v in medians.items():
        print(f"{args.label:>8} {k:34} {v:12,.2f}")
    out = Path(args.out or Path(__file__).parent / "results" / f"pg_write_{args.label}.json")
    data: dict[str, Any] = {"args": vars(args), "medians": medians, "runs": runs}
    out.write_text(json.dumps(data, indent=2) + "\n")  # noqa: ASYNC240  (once, at the end)


if __name__ == "__main__":
    asyncio.run(main())
