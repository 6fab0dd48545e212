#!/usr/bin/env python
"""The FOCUS export of a large ledger: time and peak memory of `costwarden export focus`.

    PYTHONPATH=src:. .venv/bin/python bench/focus_export.py [--records 1000000] [--ledger sqlite|postgres|both]

Fills a fresh ledger (SQLite in a temporary folder; PostgreSQL in a new database on
127.0.0.1:5432) with `--records` records of the FOCUS tests' shape (three teams and unattributed
requests, two protocols, errors, zero-cost rows), about 9 records a second, so 1M records span
~30 hours. Then runs the real CLI, `costwarden export focus` to CSV and to Parquet, in a child
process, and reports its wall time and peak resident memory (ru_maxrss of the child), the rows
written, and whether their BilledCost sums to the ledger's total to the nano-dollar.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from tests.contract.focus_sample import START, sample_records

from costwarden.domain.report import SpendQuery
from costwarden.ports import Store
from costwarden.storage.factory import open_store

ROOT = Path(__file__).resolve().parents[1]

PG_ADMIN = "postgresql://127.0.0.1:5432/postgres"
BATCH = 10_000


async def fill(store: Store, count: int) -> Decimal:
    template = sample_records(BATCH)
    for first in range(0, count, BATCH):
        batch = [
            replace(r, request_id=f"b{first + i:08d}", started_at=START + (first + i) * 0.11)
            for i, r in enumerate(template[: min(BATCH, count - first)])
        ]
        await store.write(batch)
    report = await store.spend(SpendQuery(group_by=(), percentiles=False))
    assert report.total.requests == count, report.total.requests
    return report.total.cost_usd


def export(config: Path, fmt: str, out: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one `costwarden export focus` run in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    began = time.perf_counter()
    command = [sys.executable, "-m", "costwarden.cli.main", "export", "focus", "-c", str(config)]
    command += ["--since", "2026-11-01", "--until", "2027-01-01", "--format", fmt, "-o", str(out)]
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    subprocess.run(command, check=True, capture_output=True, env=env)
    wall = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024


def csv_total(path: Path) -> tuple[int, Decimal]:
    with path.open() as rows:
        found = list(csv.DictReader(rows))
    return len(found), sum((Decimal(r["BilledCost"]) for r in found), Decimal(0))


async def one(kind: str, count: int, folder: Path) -> None:
    database = None
    if kind == "sqlite":
        url = f"sqlite:///{folder / 'ledger.db'}"
    else:
        import asyncpg

        database = f"costwarden_bench_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'CREATE DATABASE "{database}"')
        await admin.close()
        url = f"postgresql://127.0.0.1:5432/{database}"
    try:
        store = open_store(url)
        await store.open()
        began = time.perf_counter()
        total = await fill(store, count)
        filled = time.perf_counter() - began
        await store.close()
        config = folder / f"{kind}.yaml"
        config.write_text(
            'deployments: [{name: chat, protocol: openai, upstream: "http://127.0.0.1:9"}]\n'
            f'storage: {{ledger: "{url}", spool_dir: "{folder / "spool"}"}}\n'
        )
        for fmt in ("csv", "parquet"):
            out = folder / f"focus-{kind}.{fmt}"
            wall, peak = await asyncio.to_thread(export, config, fmt, out)
            size = out.stat().st_size / 2**20
            check = ""
            if fmt == "csv":
                rows, billed = csv_total(out)
                check = f"{rows:,} rows, total {'equal' if billed == total else f'DIFFERS {billed} != {total}'}"
            figures = f"{wall:9.1f} s{peak:9.0f} MiB{size:8.1f} MiB"
            print(f"{kind:9}{fmt:8}{count:>10,}{figures}  {check}  (fill {filled:.0f} s)", flush=True)
    finally:
        if database is not None:
            import asyncpg

            admin = await asyncpg.connect(PG_ADMIN)
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}"')
            await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--ledger", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    print(f"{'ledger':9}{'format':8}{'records':>10}{'time':>11}{'peak RSS':>13}{'file':>12}")
    with tempfile.TemporaryDirectory() as folder:
        for kind in ("sqlite", "postgres") if args.ledger == "both" else (args.ledger,):
            await one(kind, args.records, Path(folder))


if __name__ == "__main__":
    asyncio.run(main())
