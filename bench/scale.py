#!/usr/bin/env python
"""Scale bench: fill a ledger with realistic records through the product's own write path, then
time spend reports per window on the raw ledger (the old path) and from rollups.

    .venv/bin/python bench/scale.py                          # 1M records, SQLite and PostgreSQL
    .venv/bin/python bench/scale.py --records 10000000 --backend postgres   # optional, slow here

Records: 30 days ending now, in time order (as a gateway writes them), `--teams` teams with
`--keys-per-team` keys each, Zipf-like team traffic, `--deployments` deployments (each team uses
three), 96 % served, log-normal latencies, token costs. They go through `store.write` in batches
of `--batch` (the recorder's default, 1000). Then, for each window (1 h, 24 h, 7 d, 30 d) and each
shape (the budget rebuilds' totals; the ungrouped total; reports by team, by deployment, by both), the median of
`--repeat` runs: raw (the pre-rollup SQL, percentiles by nearest rank) and rollups (`store.spend`).
Both databases are ANALYZEd after the fill. Results go to bench/results/scale.json.
10M on PostgreSQL (docs/benchmarks.md): `--fill copy --unique 2000000 --backfill-parallel --ahead 3`.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import inspect
import itertools
import json
import math
import os
import random
import sqlite3
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from costwarden.domain.money import quantize
from costwarden.domain.record import LEDGER_COLUMNS, Outcome, UsageRecord
from costwarden.domain.report import SpendQuery, SpendReport
from costwarden.domain.rollup import CUBES
from costwarden.storage.postgres import PostgresStore
from costwarden.storage.sqlite import SQLiteStore

try:
    from costwarden.storage.rollup_report import spend_postgres, spend_sqlite

    ROLLUPS = True
except ImportError:  # the code before rollups (PYTHONPATH=<old checkout>/src): `--writes-only` measures it
    ROLLUPS = False

console = Console()
DAY = 86_400.0
WINDOWS = {"1h": 3600.0, "24h": DAY, "7d": 7 * DAY, "30d": 30 * DAY}
PRICE_IN, PRICE_OUT = Decimal("0.0000025"), Decimal("0.00001")


def records(
    n: int, now: float, teams: int, keys_per_team: int, deployments: int, seed: int, span: float = 30 * DAY
) -> Iterator[UsageRecord]:
    """`n` records over the `span` seconds before `now`, oldest first."""
    rng = random.Random(seed)
    weights = list(itertools.accumulate(1 / (t + 1) ** 0.8 for t in range(teams)))  # a few heavy teams, a long tail
    team_deployments = [[f"dep-{(t * 7 + j * 3) % deployments:02d}" for j in range(3)] for t in range(teams)]
    step = span / n
    at = now - span
    for i in range(n):
        at += step
        t = rng.choices(range(teams), cum_weights=weights)[0] if i % 64 else rng.randrange(teams)
        deployment = rng.choice(team_deployments[t])
        roll = rng.random()
        outcome = Outcome.SERVED if roll < 0.96 else Outcome.REJECTED if roll < 0.985 else Outcome.FAILED
        served = outcome is Outcome.SERVED
        tokens_in, tokens_out = (rng.randint(20, 4000), rng.randint(1, 800)) if served else (0, 0)
        latency = min(600_000.0, rng.lognormvariate(math.log(350), 0.9)) if served else rng.uniform(0.2, 3.0)
        yield UsageRecord(
            request_id=f"{int(at * 1000):013x}-{i:08x}",
            started_at=at,
            ended_at=at + latency / 1000,
            key_id=f"key-{t:03d}-{rng.randrange(keys_per_team)}",
            team=f"team-{t:03d}",
            project=f"proj-{t:03d}-{t % 3}",
            environment="prod" if t % 4 else "staging",
            tags={},
            deployment=deployment,
            protocol="openai",
            endpoint="/v1/chat/completions",
            method="POST",
            model=deployment,
            stream=rng.random() < 0.3,
            status=200 if served else (429 if outcome is Outcome.REJECTED else 502),
            upstream_status=200 if served else None,
            outcome=outcome,
            error_code=None if served else outcome.value,
            latency_ms=round(latency, 3),
            upstream_ms=round(latency * 0.97, 3) if served else None,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cached_tokens=tokens_in // 10,
            items=0,
            request_bytes=200 + tokens_in * 4,
            response_bytes=200 + tokens_out * 4,
            cost_usd=quantize(tokens_in * PRICE_IN + tokens_out * PRICE_OUT),
            pricing_basis="tokens",
        )


FOLD_EVERY = 50_000  # records between folds, as a gateway's store does in the background (FOLD_LIMIT)


def make_store(cls: type[SQLiteStore] | type[PostgresStore], url: str) -> SQLiteStore | PostgresStore:
    """A store whose pending rollup cells wait for `drain` (trees with rollup folds), so the
    bench times writes and folds apart; older trees keep every rollup in the write itself."""
    if "background_fold" in inspect.signature(cls).parameters:
        return cls(url, background_fold=False)  # type: ignore[call-arg]
    return cls(url)


async def drain(store: SQLiteStore | PostgresStore) -> None:
    """Fold every pending rollup cell (nothing on trees without folds)."""
    fold = getattr(store, "fold", None)
    if fold is not None:
        while await fold(10_000) >= 10_000:  # a store may fold each base cube up to the limit
            pass


Store = SQLiteStore | PostgresStore


class Clock:
    """Wall seconds and CPU seconds spent in a phase: this process's (the bench, asyncpg, SQLite's
    threads) and, for PostgreSQL, the database's backends serving it (from /proc), so a figure
    holds on a machine whose other work inflates wall time."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.wall = self.cpu = self.server = 0.0

    async def _backends(self) -> dict[int, float]:
        if not isinstance(self.store, PostgresStore):
            return {}
        pids = [r["pid"] for r in await self.store.pool.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        )]  # fmt: skip
        return {pid: _proc_cpu(pid) for pid in pids}

    async def run(self, work: Awaitable[Any]) -> Any:
        before = await self._backends()
        wall, cpu = time.perf_counter(), time.process_time()
        result = await work
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu
        after = await self._backends()
        self.server += sum(t - before.get(pid, 0.0) for pid, t in after.items())
        return result

    def figures(self, name: str, records: int) -> dict[str, float]:
        return {
            f"{name}_wall_s": self.wall,
            f"{name}_cpu_us_per_record": (self.cpu + self.server) * 1e6 / records,
            f"{name}_server_cpu_us_per_record": self.server * 1e6 / records,
        }


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def fill(store: Store, args: argparse.Namespace, now: float, label: str) -> dict[str, float]:
    """Write every record through store.write in batches, folding every FOLD_EVERY records; returns
    records per second of the writes alone and of writes and folds together (sustained), and the
    CPU each costs per record."""
    columns = (TextColumn(f"[bold]{label}[/] writing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    batch: list[UsageRecord] = []
    writes, folds = Clock(store), Clock(store)
    written, since_fold = 0, 0

    async def write() -> None:
        nonlocal written, since_fold
        written += await writes.run(store.write(batch))
        since_fold += len(batch)
        if since_fold >= FOLD_EVERY:
            await folds.run(drain(store))
            since_fold = 0
        progress.advance(task, len(batch))

    with Progress(*columns, console=console) as progress:
        task = progress.add_task("write", total=args.records)
        span = args.records / args.rate if args.rate else 30 * DAY
        end = now + args.ahead * 3600
        for r in records(args.records, end, args.teams, args.keys_per_team, args.deployments, args.seed, span):
            batch.append(r)
            if len(batch) == args.batch:
                await write()
                batch = []
        if batch:
            await write()
        await folds.run(drain(store))
    assert written == args.records, (written, args.records)
    return {
        "write_records_per_s": written / writes.wall,
        "fold_s": folds.wall,
        "sustained_records_per_s": written / (writes.wall + folds.wall),
        **writes.figures("write", written),
        **folds.figures("fold", written),
    }


async def copy_fill(store: PostgresStore, args: argparse.Namespace, now: float) -> dict[str, float]:
    """Fill a PostgreSQL ledger fast: the same records COPYed straight into the ledger, then rolled
    up by the rollup migration's own backfill (what upgrading an existing ledger runs). Minutes for
    10M records where the write path would take an hour on a loaded 2-core machine.

    With `--unique N`, only the first N records of the sequence are made in Python (~35 µs of CPU
    each here); the rest are their copies in SQL, shifted by whole multiples of the N records' span
    (same teams, keys, mix and spacing; ids renumbered as the generator would number them). With
    `--resume` a ledger already holding those N records is not filled again."""
    from costwarden.storage.ledger_codec import record_values

    columns = (TextColumn("[bold]postgres[/] copying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    unique = args.unique or args.records
    span = args.records / args.rate if args.rate else 30 * DAY
    end = now + args.ahead * 3600
    begin = time.perf_counter()
    have = await store.pool.fetchval("SELECT count(*) FROM ledger") if args.resume else 0
    if have not in (0, unique):
        raise SystemExit(f"--resume: the ledger holds {have:,} records, not the {unique:,} of --unique")
    chunk: list[tuple[Any, ...]] = []
    copied_so_far = 0
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("copy", total=unique)
        made = records(args.records, end, args.teams, args.keys_per_team, args.deployments, args.seed, span)
        for r in itertools.islice(made, unique - have):
            chunk.append(record_values(r, r.stream, r.cost_usd))
            if len(chunk) == 100_000:
                await store.pool.copy_records_to_table("ledger", records=chunk, columns=LEDGER_COLUMNS)
                progress.advance(task, len(chunk))
                copied_so_far += len(chunk)
                if not console.is_terminal and copied_so_far % 1_000_000 == 0:  # a log file sees no bar
                    print(f"copied {copied_so_far:,} in {time.perf_counter() - begin:.0f} s", flush=True)
                chunk = []
        if chunk:
            await store.pool.copy_records_to_table("ledger", records=chunk, columns=LEDGER_COLUMNS)
    await replicate(store, unique, args.records, unique * span / args.records)
    copied = time.perf_counter() - begin
    print(f"filled {args.records:,} in {copied:.0f} s; rolling up", flush=True)
    rolled = await backfill(store, args)
    console.print(f"filled {args.records:,} records in {copied:.0f} s, rolled up in {rolled:.0f} s")
    nan = math.nan
    return {"copy_s": copied, "backfill_s": rolled, "write_records_per_s": nan, "sustained_records_per_s": nan}


async def replicate(store: PostgresStore, unique: int, total: int, period: float) -> None:
    """Copies of the ledger's first `unique` records (the earliest; they span `period` seconds),
    each shifted by k periods, until the ledger holds `total`; ids as the generator's: the start in
    milliseconds (hex), then the record's sequence number (hex)."""
    shifted = {"request_id", "started_at", "ended_at"}
    rest = ", ".join(c for c in LEDGER_COLUMNS if c not in shifted)
    for k in range(1, math.ceil(total / unique)):
        n = min(unique, total - k * unique)
        begin = time.perf_counter()
        await store.pool.execute(
            f"INSERT INTO ledger (request_id, started_at, ended_at, {rest}) "
            "SELECT lpad(to_hex(floor((started_at + $1) * 1000)::bigint), 13, '0') || '-' || "
            "lpad(to_hex(('x' || split_part(request_id, '-', 2))::bit(32)::int + $2), 8, '0'), "
            f"started_at + $1, ended_at + $1, {rest} FROM ledger ORDER BY started_at LIMIT $3",
            k * period, k * unique, n,
        )  # fmt: skip
        print(f"copy {k}: {n:,} records in {time.perf_counter() - begin:.0f} s", flush=True)


async def backfill(store: PostgresStore, args: argparse.Namespace) -> float:
    """The rollup migration's backfill (one transaction), or with `--backfill-parallel` its
    statements on a connection per base cube at once, then the derived cubes (nothing else
    writes meanwhile, so the cells are the same); seconds."""
    from costwarden.domain.rollup import BASE_SUMS
    from costwarden.storage import rollup_write
    from costwarden.storage.rollup_write import POSTGRES_ROLLUP, _backfill_sql, backfill_postgres, derive_postgres

    # A tree from migration 0023 on packs histograms (its backfills default to 0006's jsonb form).
    form = (POSTGRES_ROLLUP,) if hasattr(rollup_write, "POSTGRES_JSON_ROLLUP") else ()
    setting = f"SET LOCAL work_mem = '{args.backfill_work_mem}'" if args.backfill_work_mem else "SELECT 1"
    begin = time.perf_counter()
    if not args.backfill_parallel:
        async with store.pool.acquire() as conn, conn.transaction():
            await conn.execute(setting)  # the backfill's hash aggregates over the whole ledger spill less
            await backfill_postgres(conn, *form)
        return time.perf_counter() - begin

    async def cube_backfill(cube: Any) -> None:
        async with store.pool.acquire() as conn, conn.transaction():
            await conn.execute(setting)
            for grain in cube.grains:
                began = time.perf_counter()
                await conn.execute(_backfill_sql(cube, grain, POSTGRES_ROLLUP))
                print(f"rolled up {cube.table} at {grain} s in {time.perf_counter() - began:.0f} s", flush=True)

    await asyncio.gather(*(cube_backfill(cube) for cube in CUBES[:2]))
    async with store.pool.acquire() as conn, conn.transaction():
        await conn.execute(setting)
        await conn.execute("DELETE FROM rollup_delta")
        await derive_postgres(conn, BASE_SUMS, *form)  # the sums backfill_postgres derives
    return time.perf_counter() - begin


async def timed(run: Callable[[], Awaitable[SpendReport]], repeat: int) -> tuple[float, SpendReport]:
    times, report = [], None
    for _ in range(repeat):
        begin = time.perf_counter()
        report = await run()
        times.append(time.perf_counter() - begin)
    assert report is not None
    return statistics.median(times), report


def queries(now: float) -> list[tuple[str, str, SpendQuery]]:
    """Per window: the start-up rebuild of a global and of a key-scoped budget (totals only, as the
    governor asks), the ungrouped total with percentiles, and a report by team and deployment."""
    out = []
    for window, seconds in WINDOWS.items():
        start = now - seconds
        out += [
            (window, "rebuild: global budget", SpendQuery(group_by=(), start=start, percentiles=False)),
            (window, "rebuild: key budget", SpendQuery((), start, where=(("key_id", "key-000-0"),), percentiles=False)),
            (window, "total with p50/p95", SpendQuery(group_by=(), start=start)),
            (window, "by team", SpendQuery(group_by=("team",), start=start)),
            (window, "by deployment", SpendQuery(group_by=("deployment",), start=start)),
            (window, "by team,deployment", SpendQuery(group_by=("team", "deployment"), start=start)),
        ]
    return out


async def measure(
    store: SQLiteStore | PostgresStore,
    raw: Callable[[SpendQuery], Awaitable[SpendReport]],
    args: argparse.Namespace,
    now: float,
) -> list[dict[str, Any]]:
    rows = []
    for window, shape, query in queries(now):
        after, rolled = await timed(functools.partial(store.spend, query), args.repeat)
        before, exact = (
            (math.nan, None) if args.skip_raw else await timed(functools.partial(raw, query), args.raw_repeat)
        )
        if exact is not None:  # the totals agree exactly; percentiles within the histogram's error
            assert (rolled.total.requests, rolled.total.cost_usd) == (exact.total.requests, exact.total.cost_usd)
            assert len(rolled.rows) == len(exact.rows)
        rows.append(
            {
                "window": window,
                "shape": shape,
                "raw_s": before,
                "rollups_s": after,
                "groups": len(rolled.rows),
                "requests": rolled.total.requests,
            }
        )
    return rows


async def start_and_probes(store: SQLiteStore | PostgresStore, now: float) -> dict[str, float]:
    """A gateway's start with a rolling-30d budget (open, migrations, the budget's rebuild: totals
    only), then the latency of readiness pings while a 30-day report by team,deployment runs."""
    begin = time.perf_counter()
    await store.open()
    await store.spend(SpendQuery(group_by=(), start=now - WINDOWS["30d"], percentiles=False))
    start_s = time.perf_counter() - begin
    report = asyncio.create_task(store.spend(SpendQuery(group_by=("team", "deployment"), start=now - WINDOWS["30d"])))
    pings: list[float] = []
    while not report.done():
        begin = time.perf_counter()
        assert await store.ping()
        pings.append(time.perf_counter() - begin)
        await asyncio.sleep(0.01)
    await report
    await store.close()
    pings.sort()
    return {
        "start_s": start_s,
        "ping_p50_s": statistics.median(pings),
        "ping_max_s": pings[-1],
        "pings": len(pings),
    }


def fresh_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def save(out: str, data: dict[str, Any]) -> None:
    Path(out).write_text(json.dumps(data, indent=2) + "\n")


async def run_sqlite(args: argparse.Namespace, now: float) -> dict[str, Any]:
    path = fresh_file(Path(args.dir) / "scale.db")
    store = make_store(SQLiteStore, str(path))
    await store.open()
    rate = await fill(store, args, now, "sqlite")
    if args.writes_only or not ROLLUPS:
        await store.close()
        return {"backend": "sqlite", "records": args.records, **rate, "open_s": 0.0, "reports": []}
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("ANALYZE")
    begin = time.perf_counter()
    opened = SQLiteStore(str(path))
    await opened.open()
    start_s = time.perf_counter() - begin
    await opened.close()
    probes = await start_and_probes(SQLiteStore(str(path)), now)
    loop = asyncio.get_running_loop()

    async def raw(q: SpendQuery) -> SpendReport:
        return await loop.run_in_executor(None, lambda: spend_sqlite(conn, q, rollups=False))

    try:
        reports = await measure(store, raw, args, now)
    finally:
        conn.close()
        await store.close()
    return {
        "backend": "sqlite",
        "records": args.records,
        **rate,
        "open_s": start_s,
        **probes,
        "reports": reports,
    }


async def run_postgres(args: argparse.Namespace, now: float) -> dict[str, Any]:
    if not (args.resume or args.measure_only):
        admin = await asyncpg.connect(args.postgres_admin)
        await admin.execute(f'DROP DATABASE IF EXISTS "{args.postgres_db}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{args.postgres_db}"')
        await admin.close()
    url = args.postgres_admin.rsplit("/", 1)[0] + "/" + args.postgres_db
    store = make_store(PostgresStore, url)
    await store.open()
    if args.measure_only:  # a ledger filled (and analysed) by an earlier run
        nan = math.nan
        rate = {"write_records_per_s": nan, "sustained_records_per_s": nan}
    else:
        rate = await (copy_fill(store, args, now) if args.fill == "copy" else fill(store, args, now, "postgres"))
    if args.writes_only or not ROLLUPS:
        await store.close()
        return {"backend": "postgres", "records": args.records, **rate, "open_s": 0.0, "reports": []}
    for table in () if args.measure_only else ("ledger", *(c.table for c in CUBES), "rollup_delta"):
        if await store.pool.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
            await store.pool.execute(f"VACUUM ANALYZE {table}")  # as autovacuum would
    begin = time.perf_counter()
    opened = PostgresStore(url)
    await opened.open()
    start_s = time.perf_counter() - begin
    await opened.close()
    probes = await start_and_probes(PostgresStore(url), now)

    async def raw(q: SpendQuery) -> SpendReport:
        async with store.pool.acquire() as conn:
            return await spend_postgres(conn, q, rollups=False)

    try:
        reports = await measure(store, raw, args, now)
    finally:
        await store.close()
    return {
        "backend": "postgres",
        "records": args.records,
        **rate,
        "open_s": start_s,
        **probes,
        "reports": reports,
    }


def show(result: dict[str, Any]) -> None:
    table = Table(
        title=(
            f"{result['backend']}: {result['records']:,} records, "
            f"writes {result['write_records_per_s']:,.0f} records/s (with folds "
            f"{result['sustained_records_per_s']:,.0f}), open {result['open_s'] * 1000:.0f} ms"
        )
    )
    for column in ("window", "report", "raw (s)", "rollups (s)", "speed-up", "groups"):
        table.add_column(column, justify="left" if column in ("window", "report") else "right")
    for r in result["reports"]:
        speedup = r["raw_s"] / r["rollups_s"] if r["rollups_s"] and not math.isnan(r["raw_s"]) else math.nan
        table.add_row(
            r["window"],
            r["shape"],
            f"{r['raw_s']:.3f}",
            f"{r['rollups_s']:.4f}",
            f"{speedup:,.1f}x",
            f"{r['groups']:,}",
        )
    console.print(table)
    if "start_s" in result:
        console.print(
            f"start with a rolling-30d budget {result['start_s'] * 1000:.0f} ms; readiness ping during a 30-day "
            f"report: median {result['ping_p50_s'] * 1000:.1f} ms, max {result['ping_max_s'] * 1000:.1f} ms "
            f"({result['pings']} pings)"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--teams", type=int, default=500)
    parser.add_argument("--keys-per-team", type=int, default=20)
    parser.add_argument("--deployments", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5, help="runs per rollup report (median)")
    parser.add_argument("--raw-repeat", type=int, default=2, help="runs per raw report (median)")
    parser.add_argument("--skip-raw", action="store_true", help="time rollup reports only")
    parser.add_argument("--writes-only", action="store_true", help="fill and time the writes only")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument(
        "--fill",
        choices=("write", "copy"),
        default="write",
        help="write: through store.write (timed); copy (PostgreSQL): COPY, then the rollup backfill, for 10M",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="records per second of traffic the records span (default: spread over 30 days); e.g. 70000 for a fleet",
    )
    parser.add_argument(
        "--ahead",
        type=float,
        default=0.0,
        help="hours past now that the records end, so windows timed later (report --since 1h) still hold traffic",
    )
    parser.add_argument("--backfill-work-mem", default="", help="work_mem for --fill copy's backfill, e.g. 256MB")
    parser.add_argument("--backfill-parallel", action="store_true", help="--fill copy: one connection per base cube")
    parser.add_argument("--unique", type=int, default=0, help="--fill copy: records made in Python; the rest copies")
    parser.add_argument("--measure-only", action="store_true", help="PostgreSQL: time the reports of a filled ledger")
    parser.add_argument("--resume", action="store_true", help="--fill copy: keep the database and its --unique records")
    parser.add_argument("--dir", default="/tmp/costwarden-scale")
    parser.add_argument("--postgres-admin", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument("--postgres-db", default="costwarden_scale")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "scale.json"))
    args = parser.parse_args()
    now = time.time()
    results = []
    for backend in ("sqlite", "postgres") if args.backend == "both" else (args.backend,):
        result = await (run_sqlite if backend == "sqlite" else run_postgres)(args, now)
        show(result)
        results.append(result)
    save(args.out, {"args": vars(args), "results": results})
    console.print(f"results: {args.out}")


if __name__ == "__main__":
    asyncio.run(main())
