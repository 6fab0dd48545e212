#!/usr/bin/env python
"""Monthly partitions of a PostgreSQL ledger: the conversion's time, and a prune by dropping whole
months against the same prune by batched DELETEs, on two copies of a filled ledger.

    .venv/bin/python bench/probes.py --ledger postgresql://127.0.0.1:5432/costwarden_probes --records 300000
    .venv/bin/python bench/partitions.py --source costwarden_probes

The source database is copied twice (`CREATE DATABASE … TEMPLATE`, so nothing may be connected to
it); one copy is partitioned (`PostgresStore.partition`, as `costwarden ledger partition` does),
then both are pruned up to the start of the newest month holding records, 10,000 a batch (the
default `storage.retention.batch`), by `prune_ledger` as the command and the leader do.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import asyncpg

from costwarden.services.retention import prune_ledger
from costwarden.storage.partitions import bounds, month_of
from costwarden.storage.postgres import PostgresStore


async def copy(admin_url: str, source: str, name: str) -> str:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {source}")
    finally:
        await admin.close()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="costwarden_probes")
    parser.add_argument("--postgres-admin", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    partitioned = PostgresStore(await copy(args.postgres_admin, args.source, "costwarden_bench_partitioned"))
    plain = PostgresStore(await copy(args.postgres_admin, args.source, "costwarden_bench_unpartitioned"))
    await partitioned.open()
    await plain.open()
    try:
        began = time.perf_counter()
        moved = await partitioned.partition()
        converted = time.perf_counter() - began
        print(f"converted {moved:,} records in {converted:.2f} s ({converted / max(moved, 1) * 1e6:.0f} µs a record)")
        newest = await partitioned.pool.fetchval("SELECT MAX(started_at) FROM ledger")
        cutoff = float(bounds(*month_of(newest))[0])
        for label, store in (("partitioned (drop whole months)", partitioned), ("unpartitioned (DELETE)", plain)):
            began = time.perf_counter()
            pruned = await prune_ledger(store, cutoff, args.batch)
            print(f"prune, {label}: {pruned:,} records in {time.perf_counter() - began:.2f} s")
    finally:
        await partitioned.close()
        await plain.close()


if __name__ == "__main__":
    asyncio.run(main())
