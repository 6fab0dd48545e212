#!/usr/bin/env python
"""`costwarden allocation` over a large ledger: wall time and peak memory of the real CLI.

    PYTHONPATH=src:. .venv/bin/python bench/allocation.py [--records 1000000] [--ledger sqlite|postgres|both]

Fills a fresh ledger (SQLite in a temporary folder; PostgreSQL in a new database on 127.0.0.1:5432)
with `--records` served requests over 7 days (two deployments with `compute:`, four teams, upstream
times 5-500 ms, overlapping), then runs `costwarden allocation --by team,project --format json` in a
child process and reports its wall time, its peak resident memory (ru_maxrss of the child), the
records it read and whether the rows sum to the provisioned cost exactly.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import orjson
from tests.contract.test_store import make_record

from costwarden.ports import Store
from costwarden.storage.factory import open_store

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = "postgresql://127.0.0.1:5432/postgres"
START = 1_800_000_000.0  # 2027-01-15T08:00Z
SPAN = 7 * 86400.0
BATCH = 10_000
CONFIG = """\
hardware:
  - {{name: gpu-box, accelerator: NVIDIA H200, accelerator_count: 1, vcpus: 16, memory_gib: 128, hourly_usd: 3.72}}
deployments:
  - {{name: iris, protocol: v2, upstream: "http://127.0.0.1:9", compute: {{profile: aws-c7i.xlarge, replicas: 2}}}}
  - {{name: chat, protocol: openai, upstream: "http://127.0.0.1:9", compute: {{profile: gpu-box, replicas: 1}}}}
storage:
  ledger: {ledger}
"""


async def fill(store: Store, count: int) -> None:
    rng = random.Random(7)
    template = [make_record(i, rng) for i in range(1000)]
    teams = ["search", "ads", "research", "fraud"]
    for first in range(0, count, BATCH):
        batch = []
        for i in range(first, min(first + BATCH, count)):
            end = START + SPAN * i / count + rng.uniform(0, 2)
            batch.append(replace(
                template[i % 1000], request_id=f"a{i:09d}", started_at=end - 0.6, ended_at=end,
                upstream_ms=rng.uniform(5, 500), deployment="iris" if i % 3 else "chat", team=teams[i % 4],
                project=f"p{i % 3}",
            ))  # fmt: skip
        await store.write(batch)


def allocate(config: Path) -> tuple[float, float, dict[str, object]]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    began = time.perf_counter()
    command = [sys.executable, "-m", "costwarden.cli.main", "allocation", "-c", str(config), "--by", "team,project"]
    command += ["--from", "2027-01-15T00:00:00Z", "--to", "2027-01-23T00:00:00Z", "--format", "json"]
    out = subprocess.run(command, capture_output=True, check=True, env={"PYTHONPATH": str(ROOT / "src")})
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1024, orjson.loads(out.stdout)


async def prepare(kind: str, count: int, tmp: Path) -> str:
    if kind == "sqlite":
        url = f"sqlite:///{tmp / 'ledger.db'}"
    else:
        import asyncpg

        name = f"costwarden_bench_{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(PG_ADMIN)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
        url = f"postgresql://127.0.0.1:5432/{name}"
    store = open_store(url)
    await store.open()
    began = time.perf_counter()
    await fill(store, count)
    await store.close()
    print(f"{kind}: filled {count:,} records in {time.perf_counter() - began:.1f} s", flush=True)
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--ledger", choices=["sqlite", "postgres", "both"], default="sqlite")
    args = parser.parse_args()
    kinds = ["sqlite", "postgres"] if args.ledger == "both" else [args.ledger]
    print("| ledger | records | time | peak RSS | rows | identity |\n| --- | ---: | ---: | ---: | ---: | --- |")
    for kind in kinds:
        with tempfile.TemporaryDirectory() as folder:
            tmp = Path(folder)
            url = asyncio.run(prepare(kind, args.records, tmp))
            config = tmp / "costwarden.yaml"
            config.write_text(CONFIG.format(ledger=url))
            seconds, peak, data = allocate(config)
            rows = data["rows"]
            assert isinstance(rows, list) and isinstance(data["totals"], dict)
            total = sum(Decimal(r["totalCost"]) for r in rows)
            exact = total == Decimal(data["totals"]["provisionedCost"])
            read = data["records"]["scanned"]  # type: ignore[index]
            identity = "exact" if exact else "OFF"
            print(f"| {kind} | {read:,} | {seconds:.1f} s | {peak:.0f} MiB | {len(rows)} | {identity} |")


if __name__ == "__main__":
    main()
