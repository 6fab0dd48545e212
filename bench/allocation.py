#!/usr/bin/env python
"""`costwarden allocation` over a large ledger: wall time and peak memory of the real CLI.

    PYTHONPATH=src:. .venv/bin/python bench/allocation.py [--records 1000000] [--ledger sqlite|postgres|both]

Fills a fresh ledger (SQLite in a temporary folder; PostgreSQL in a new database on 127.0.0.1:5432)
with `--records` served requests over 7 days (two deployments with `compute:`, four teams, upstream
times 5-500 ms, overlapping), then runs `costwarden allocation --by team,project --format json` in a
child process and reports its wall time, its peak resident memory (ru_maxrss of the child), the
records it read and whether the rows sum to the provisioned cost exactly. `--by team --by team,project`
runs each grouping; `--fold` then folds the ledger's closed hours (as a gateway does in the background,
services/busy_folds.py), prints the back-fill's time, and runs each grouping again: a grouping by team
and/or deployment reads the folds, the others still sweep every interval. Both must give the same rows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
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


def allocate(config: Path, by: str = "team,project") -> tuple[float, float, float, dict[str, object]]:
    """The CLI in a child process: (seconds, its own CPU seconds, its own peak RSS in MiB, its JSON)."""
    began = time.perf_counter()
    command = [sys.executable, "-m", "costwarden.cli.main", "allocation", "-c", str(config), "--by", by]
    command += ["--from", "2027-01-15T00:00:00Z", "--to", "2027-01-23T00:00:00Z", "--format", "json"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, env={"PYTHONPATH": str(ROOT / "src")})
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - began
    if proc.returncode:
        raise SystemExit(f"costwarden allocation failed: {proc.returncode}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, orjson.loads(out)


async def prepare(kind: str, count: int, tmp: Path, prefix: str) -> str:
    if kind == "sqlite":
        url = f"sqlite:///{tmp / 'ledger.db'}"
    else:
        import asyncpg

        name = f"{prefix}{uuid.uuid4().hex[:8]}"
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


async def drop(url: str) -> None:
    """The bench's PostgreSQL database, dropped when its runs are done."""
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


async def fold(config: Path) -> float:
    """Fold every hour of the filled week, as the gateway's folder would once they closed; seconds."""
    from costwarden.config.loader import load_config
    from costwarden.services.busy_folds import BusyFolder

    async def lead(now: float) -> bool:
        return True

    began = time.perf_counter()
    folder = BusyFolder(load_config(config), lead)
    await folder.fold(START + SPAN + 86400 + folder.lag_s)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--ledger", choices=["sqlite", "postgres", "both"], default="sqlite")
    parser.add_argument("--by", action="append", help="groupings to run (default: team,project)")
    parser.add_argument("--fold", action="store_true", help="then fold the closed hours and run them again")
    parser.add_argument("--pg-prefix", default="costwarden_bench_", help="name prefix of the PostgreSQL database")
    args = parser.parse_args()
    kinds = ["sqlite", "postgres"] if args.ledger == "both" else [args.ledger]
    print("| ledger | by | folds | records read | time | CPU | peak RSS | rows | identity |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for kind in kinds:
        with tempfile.TemporaryDirectory() as folder:
            tmp = Path(folder)
            url = asyncio.run(prepare(kind, args.records, tmp, args.pg_prefix))
            try:
                run(kind, url, tmp, args)
            finally:
                if kind == "postgres":
                    asyncio.run(drop(url))


def run(kind: str, url: str, tmp: Path, args: argparse.Namespace) -> None:
    """Each grouping over the filled ledger (then again after folding, with --fold): one table row each."""
    config = tmp / "costwarden.yaml"
    config.write_text(CONFIG.format(ledger=url))
    seen: dict[str, object] = {}
    for folded in (False, True) if args.fold else (False,):
        if folded:
            print(f"{kind}: folded {asyncio.run(fold(config)):.1f} s", flush=True)
        for by in args.by or ["team,project"]:
            seconds, cpu, peak, data = allocate(config, by)
            rows = data["rows"]
            assert isinstance(rows, list) and isinstance(data["totals"], dict)
            total = sum(Decimal(r["totalCost"]) for r in rows)
            exact = total == Decimal(data["totals"]["provisionedCost"])
            read = data["records"]["scanned"]  # type: ignore[index]
            same = seen.setdefault(by, rows) == rows
            identity = ("exact" if exact else "OFF") + ("" if same else ", rows DIFFER from the walk")
            cells = [kind, by, "yes" if folded else "no", f"{read:,}", f"{seconds:.2f} s", f"{cpu:.2f} s"]
            cells.append(f"{peak:.0f} MiB")
            print("| " + " | ".join([*cells, str(len(rows)), identity]) + " |", flush=True)


if __name__ == "__main__":
    main()
