#!/usr/bin/env python
"""Dashboard API response time per panel over a 1M-record ledger, through a real gateway process.

    .venv/bin/python bench/dashboard.py                      # fills 1M records (SQLite), ~3-5 min here
    .venv/bin/python bench/dashboard.py --reuse              # the ledger from the last run
    .venv/bin/python bench/dashboard.py --backend postgres   # 1M records COPYed into PostgreSQL, rolled up
    .venv/bin/python bench/dashboard.py --reuse --baseline /tmp/base/src   # and a baseline tree's gateway, alternately

The ledger is filled with bench/scale.py's generator (30 days ending now, 500 teams, 10,000 keys,
20 deployments) through `store.write` (rollups included), then `costwarden serve` starts on it
with two budgets (one team's day, a global month) and `compute:` on one deployment (2 replicas of
a catalogue GPU machine), signs in as admin at /dashboard/login, and times each panel's request as
the page makes it: the first (cold) and the median of the `--repeat` runs after it (warm: settled
spend buckets and top drivers come from the dashboard's 60 s caches). Cold is a fresh gateway
process for each panel (nothing cached in it; the OS page cache is warm), unless `--shared-gateway`;
`--rounds N` measures every panel N times over (medians), `--panels TEXT` only those named so,
`--baseline DIR` runs each panel on a gateway of another tree's package too, right before this
tree's, so both see the same load.
A panel an older tree does not serve (404) is skipped. Results go to bench/results/dashboard.json.
(`--only` is the same as `--panels`). Before measuring, the
closed hours of request intervals are folded for allocation (what a gateway does in the
background, services/busy_folds.py; the back-fill's time is printed), unless `--no-fold`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from scale import copy_fill, fill

from costwarden.domain.rollup import CUBES
from costwarden.storage.postgres import PostgresStore
from costwarden.storage.sqlite import SQLiteStore

console = Console()
TOKEN = "bench-admin-token-0123456789abcdef"
PANELS: list[tuple[str, str, dict[str, Any]]] = [
    ("spend 24h by team, hourly", "spend", {"by": "team", "step": "hour", "since": "24h"}),
    ("spend 24h by deployment, hourly", "spend", {"by": "deployment", "step": "hour", "since": "24h"}),
    ("spend 7d by team, daily", "spend", {"by": "team", "step": "day", "since": "7d"}),
    ("spend 30d by team, daily", "spend", {"by": "team", "step": "day", "since": "30d"}),
    ("latency 24h", "latency", {"since": "24h"}),
    ("latency 30d", "latency", {"since": "30d"}),
    ("top drivers 24h", "drivers", {"since": "24h"}),
    ("top drivers 30d", "drivers", {"since": "30d"}),
    ("budgets", "budgets", {}),
    ("burn-down: team day budget", "budgets/team-day/burndown", {}),
    ("burn-down: global month budget", "budgets/all-month/burndown", {}),
    ("alerts", "alerts", {}),
    ("requests, newest 50", "requests", {"since": "24h", "limit": 50}),
    ("requests, team filter", "requests", {"since": "24h", "limit": 50, "where": "team=team-000"}),
    ("compute (GPU-hours, idle) 24h", "compute", {"since": "24h"}),
    ("compute (GPU-hours, idle) 30d", "compute", {"since": "30d"}),
]


def config(ledger: str, teams: int, folder: Path) -> Path:
    data = {
        "server": {"host": "127.0.0.1", "admin_token": TOKEN},
        "storage": {"ledger": ledger, "spool_dir": str(folder / "spool")},
        "environments": ["prod", "staging"],
        "teams": [{"name": f"team-{t:03d}", "projects": [f"proj-{t:03d}-{t % 3}"]} for t in range(teams)],
        "deployments": [
            {
                "name": "dep-00",
                "protocol": "openai",
                "upstream": "http://127.0.0.1:9",
                "compute": {"profile": "aws-g6.xlarge", "replicas": 2},
            }
        ],
        "governance": {
            "spikes": {"enabled": False},
            "budgets": [
                {"id": "team-day", "scope": {"team": "team-000"}, "window": "day", "limit_usd": "100"},
                {"id": "all-month", "window": "month", "limit_usd": "100000", "action": "alert_only"},
            ],
        },
    }
    path = folder / "dashboard-bench.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def serve(
    config_path: Path, port: int, folder: Path, src: str | None = None, poll: float = 0.2
) -> subprocess.Popen[bytes]:
    """`costwarden serve` on the config, once `/readyz` answers 200 (asked every `poll` seconds);
    `src`: the gateway runs that tree's package (a baseline)."""
    binary = Path(sys.executable).parent / "costwarden"
    log = (folder / "gateway.log").open("wb")
    argv = [str(binary), "serve", "--config", str(config_path), "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": src} if src else None
    proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"the gateway exited: see {folder / 'gateway.log'}")
        time.sleep(poll)
    proc.terminate()
    raise SystemExit("the gateway did not become ready in 120 s")


def measure(url: str, repeat: int, panels: list[tuple[str, str, dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    with httpx.Client(base_url=url, timeout=120) as client:
        assert client.post("/dashboard/login", data={"token": TOKEN}).status_code == 303
        for name, path, params in panels:
            times = []
            for _ in range(repeat + 1):
                begin = time.perf_counter()
                reply = client.get(f"/dashboard/api/{path}", params=params)
                times.append(time.perf_counter() - begin)
                if reply.status_code == 404 and not times[1:]:
                    break  # a panel this tree does not serve
                assert reply.status_code == 200, (path, reply.status_code, reply.text[:300])
            else:
                warm = statistics.median(times[1:]) if len(times) > 1 else math.nan
                rows.append({"panel": name, "cold_ms": times[0] * 1000, "warm_ms": warm * 1000})
    return rows


async def fold(config_path: Path) -> tuple[int, float]:
    """Fold every closed hour of request intervals, as the gateway's folder does: (rows, seconds)."""
    from costwarden.config.loader import load_config
    from costwarden.services.busy_folds import BusyFolder

    async def lead(now: float) -> bool:
        return True

    began = time.perf_counter()
    written = await BusyFolder(load_config(config_path), lead).fold(time.time())
    return written, time.perf_counter() - began


def measure_cold(config_path: Path, args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    """Each panel on a fresh gateway: its first request finds nothing cached. With `--baseline`,
    the baseline tree's gateway first, then this tree's, panel by panel (the same minute's load).
    Over `--rounds` rounds, each figure is the median of its rounds."""
    runs: dict[str, dict[str, list[float]]] = {}
    for _ in range(args.rounds):
        for panel in [p for p in PANELS]:
            for label, src in (("before_", args.baseline), ("", None)) if args.baseline else (("", None),):
                proc = serve(config_path, args.port, folder, src)
                try:
                    for row in measure(f"http://127.0.0.1:{args.port}", args.repeat, [panel]):
                        into = runs.setdefault(row["panel"], {})
                        for key in ("cold_ms", "warm_ms"):
                            into.setdefault(label + key, []).append(row[key])
                finally:
                    proc.terminate()
                    proc.wait(30)
    return [
        {"panel": name, **{key: statistics.median(values) for key, values in figures.items()}, "rounds": figures}
        for name, figures in runs.items()
    ]


async def build(ledger: Path, args: argparse.Namespace, now: float) -> dict[str, float]:
    store = SQLiteStore(str(ledger))
    await store.open()
    try:
        return await fill(store, args, now, "sqlite")
    finally:
        await store.close()


async def build_postgres(args: argparse.Namespace, now: float) -> str:
    """A fresh database of its own, the records COPYed in and rolled up by the migration's backfill
    (bench/scale.py's copy_fill), then VACUUM ANALYZE as autovacuum would; its URL."""
    import asyncpg

    admin = await asyncpg.connect(args.postgres_admin)
    await admin.execute(f'DROP DATABASE IF EXISTS "{args.postgres_db}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{args.postgres_db}"')
    await admin.close()
    url = args.postgres_admin.rsplit("/", 1)[0] + "/" + args.postgres_db
    store = PostgresStore(url)
    await store.open()
    try:
        await copy_fill(store, args, now)
        for table in ("ledger", *(cube.table for cube in CUBES), "rollup_delta"):
            await store.pool.execute(f"VACUUM ANALYZE {table}")
    finally:
        await store.close()
    return url


def show(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    title = f"dashboard API over {args.records:,} records ({args.backend}); warm: median of {args.repeat}"
    table = Table(title=title)
    keys = [k for k in ("before_cold_ms", "cold_ms", "before_warm_ms", "warm_ms") if any(k in r for r in rows)]
    table.add_column("panel")
    for key in keys:
        table.add_column(key.removesuffix("_ms").replace("_", " ") + " ms", justify="right")
    for row in rows:
        table.add_row(row["panel"], *(f"{row[k]:.0f}" if k in row else "–" for k in keys))
    console.print(table)


def ledger_url(args: argparse.Namespace, folder: Path) -> str:
    """The ledger to measure: filled now, or the last run's with `--reuse`."""
    ledger = folder / "ledger.db"
    if args.backend == "postgres":
        url = args.postgres_admin.rsplit("/", 1)[0] + "/" + args.postgres_db
        if not args.reuse:
            url = asyncio.run(build_postgres(args, time.time()))
        return url
    if not (args.reuse and ledger.exists()):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{ledger}{suffix}").unlink(missing_ok=True)
        rates = asyncio.run(build(ledger, args, time.time()))
        console.print(f"filled {args.records:,} records at {rates['sustained_records_per_s']:,.0f} records/s")
    return f"sqlite:///{ledger}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--teams", type=int, default=500)
    parser.add_argument("--keys-per-team", type=int, default=20)
    parser.add_argument("--deployments", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=14)
    parser.set_defaults(rate=0.0)  # bench/scale.py's generator: records over 30 days
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--port", type=int, default=18790)
    parser.add_argument("--dir", default="/tmp/costwarden-dashboard-bench")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--postgres-admin", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument("--postgres-db", default="costwarden_dashboard")
    parser.add_argument("--reuse", action="store_true", help="keep the ledger of the last run")
    parser.add_argument("--shared-gateway", action="store_true", help="one gateway for every panel (cold: in order)")
    parser.add_argument("--baseline", help="a baseline tree's src folder: each panel on its gateway too, alternately")
    parser.add_argument("--rounds", type=int, default=1, help="cold measurements per panel (median)")
    parser.add_argument("--panels", "--only", help="only the panels whose name holds this text, e.g. '30d'")
    parser.add_argument("--no-fold", action="store_true", help="do not fold request intervals first")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "dashboard.json"))
    args = parser.parse_args()
    if args.panels:
        PANELS[:] = [panel for panel in PANELS if args.panels in panel[0]]
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    config_path = config(ledger_url(args, folder), args.teams, folder)
    if not args.no_fold:
        written, seconds = asyncio.run(fold(config_path))
        console.print(f"folded request intervals for allocation: {written:,} rows in {seconds:.1f} s")
    if args.shared_gateway:
        proc = serve(config_path, args.port, folder)
        try:
            rows = measure(f"http://127.0.0.1:{args.port}", args.repeat, PANELS)
        finally:
            proc.terminate()
            proc.wait(30)
    else:
        rows = measure_cold(config_path, args, folder)
    show(rows, args)
    Path(args.out).write_text(json.dumps({"args": vars(args), "load": os.getloadavg(), "panels": rows}, indent=2))
    console.print(f"results: {args.out}")


if __name__ == "__main__":
    main()
