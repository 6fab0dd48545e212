#!/usr/bin/env python
"""The SQLite ledger writer's CPU per record, in isolation (issue 11: the writer thread shares the
event loop's core), split into its parts.

    PYTHONPATH=$PWD/src .venv/bin/python bench/sqlite_write.py                     # both shapes, 3 runs
    PYTHONPATH=$PWD/src .venv/bin/python bench/sqlite_write.py --split --indexes   # where the CPU goes
    .venv/bin/python bench/sqlite_write.py --trees /tmp/before,. --runs 5          # trees alternately

Records arrive at `--rate` a second (the gateway's load) and are written by `SQLiteStore.write` in
batches of `--batch` (the recorder flushes 1,000 at a time under load: `ledger.batch_size`), into a
fresh database file per run; every `--fold-every` seconds of traffic the pending rollup cells are
folded, as the store does in the background (every 5 s). Two shapes:

- `gateway`: what `bench/chain_time.py`'s gateway writes: one team, key, deployment and model, every
  request served, its latency around a millisecond;
- `fleet`: `bench/scale.py`'s generator: 500 teams, 20 keys each, 20 deployments, 4 % errors.

`total` is this process's CPU (the event loop's encoding and the writer thread's work) over every write
and fold, per record. `--split` replays the same batches through the steps of the write, each timed
on the writer thread (thread CPU): encode (rows and latency bins), insert (the ledger's INSERT),
collect (the pending cells of the stored rows), delta (their INSERT), commit, fold. `--indexes`
inserts the same batches with each ledger index dropped in turn: the CPU one index adds. Results go
to bench/results/sqlite_write_<label>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHAPES = ("gateway", "fleet")
PRICE = Decimal("0.000018")


def gateway_records(n: int, start: float, rate: float, seed: int) -> Iterator[Any]:
    """`n` records as bench/chain_time.py's gateway writes them, `rate` a second from `start`."""
    from costwarden.domain.record import Outcome, UsageRecord

    rng = random.Random(seed)
    prefix = f"{rng.getrandbits(40):010x}"
    for i in range(n):
        at = start + i / rate
        latency = rng.lognormvariate(math.log(0.9), 0.5)
        yield UsageRecord(
            request_id=f"{int(at * 1000):012x}{prefix}{i:010x}",
            started_at=at,
            ended_at=at + latency / 1000,
            key_id="bench",
            team="bench",
            project="load",
            environment="prod",
            tags={},
            deployment="bench",
            protocol="openai",
            endpoint="/v1/chat/completions",
            method="POST",
            model="bench-model",
            stream=False,
            status=200,
            upstream_status=200,
            outcome=Outcome.SERVED,
            error_code=None,
            latency_ms=round(latency, 3),
            upstream_ms=round(latency * 0.6, 3),
            input_tokens=9,
            output_tokens=9,
            cached_tokens=0,
            items=0,
            request_bytes=87,
            response_bytes=331,
            cost_usd=PRICE,
            pricing_basis="tokens",
        )


def batches(shape: str, n: int, batch: int, rate: float, seed: int) -> list[list[Any]]:
    start = 1_800_000_000.0 + 17.25  # not on a minute's edge
    if shape == "gateway":
        source = gateway_records(n, start, rate, seed)
    else:
        sys.path.insert(0, str(ROOT / "bench"))
        from scale import records

        source = records(n, start + n / rate, 500, 20, 20, seed, span=n / rate)
    rows = list(source)
    return [rows[i : i + batch] for i in range(0, len(rows), batch)]


def thread_cpu() -> float:
    return time.thread_time()


def ledger_insert(conn: Any, rows: list[tuple[Any, ...]]) -> None:
    """The store's ledger INSERT of a batch's rows (commit 7d295d4 inserted them by multi-row
    statements: `s._LEDGER`, `s.insert_rows`)."""
    from costwarden.storage import sqlite as s

    if hasattr(s, "_LEDGER"):
        s.insert_rows(conn, s._LEDGER, rows, s._IDEMPOTENT)
    else:
        conn.executemany(s._INSERT, rows)


async def open_store(path: str, pragmas: list[str]) -> Any:
    from costwarden.storage.sqlite import SQLiteStore

    store = SQLiteStore(path, background_fold=False)
    await store.open()
    for pragma in pragmas:
        await store._run(lambda conn, p=pragma: conn.execute(f"PRAGMA {p}").fetchall())
    return store


async def drain(store: Any) -> None:
    while await store.fold(10_000) >= 10_000:
        pass


async def total(data: list[list[Any]], args: argparse.Namespace, folder: str) -> dict[str, float]:
    """CPU per record of `store.write` for every batch and the folds, this process's."""
    store = await open_store(os.path.join(folder, "total.db"), args.pragma)
    per_fold = max(1, round(args.fold_every * args.rate / args.batch))
    n = sum(len(b) for b in data)
    write_cpu = fold_cpu = 0.0
    wall = time.perf_counter()
    try:
        for i, batch in enumerate(data, 1):
            cpu = time.process_time()
            stored = await store.write(batch)
            write_cpu += time.process_time() - cpu
            assert stored == len(batch), (stored, len(batch))
            if i % per_fold == 0 or i == len(data):
                cpu = time.process_time()
                await drain(store)
                fold_cpu += time.process_time() - cpu
    finally:
        await store.close()
    return {
        "write_us": write_cpu * 1e6 / n,
        "fold_us": fold_cpu * 1e6 / n,
        "total_us": (write_cpu + fold_cpu) * 1e6 / n,
        "records_per_s_wall": n / (time.perf_counter() - wall),
    }


async def split(data: list[list[Any]], args: argparse.Namespace, folder: str) -> dict[str, float]:
    """The write's steps timed apart, on the writer thread (this tree's building blocks)."""
    from costwarden.domain.latency_histogram import bin_of
    from costwarden.storage import sqlite as s
    from costwarden.storage.rollup_fold import add_delta_sqlite, collect, fold_sqlite
    from costwarden.storage.rollup_write import mark_sqlite

    store = await open_store(os.path.join(folder, "split.db"), args.pragma)
    per_fold = max(1, round(args.fold_every * args.rate / args.batch))
    spent: dict[str, float] = dict.fromkeys(("encode", "begin", "insert", "collect", "delta", "commit", "fold"), 0.0)
    cells = 0

    def step(name: str, fn: Callable[[], Any]) -> Any:
        cpu = thread_cpu()
        out = fn()
        spent[name] += thread_cpu() - cpu
        return out

    def drain_on(conn: Any) -> None:
        while fold_sqlite(conn, 10_000) >= 10_000:
            pass

    def write(conn: Any, batch: list[Any], fold: bool) -> int:
        nonlocal cells
        rows = step("encode", lambda: [s._row(r) for r in batch])
        bins = step("encode", lambda: [bin_of(r.latency_ms) for r in batch])
        step("begin", lambda: (conn.execute("BEGIN IMMEDIATE"), mark_sqlite(conn)))
        step("insert", lambda: ledger_insert(conn, rows))
        pending = step("collect", lambda: collect(zip(batch, bins, (row[s._COST_AT] for row in rows), strict=True)))
        cells += len(pending)
        step("delta", lambda: add_delta_sqlite(conn, pending))
        step("commit", lambda: conn.execute("COMMIT"))
        if fold:
            step("fold", lambda: drain_on(conn))
        return len(rows)

    n = 0
    try:
        for i, batch in enumerate(data, 1):
            fold = i % per_fold == 0 or i == len(data)
            n += await store._run(lambda conn, b=batch, f=fold: write(conn, b, f))
    finally:
        await store.close()
    out = {f"{k}_us": v * 1e6 / n for k, v in spent.items()}
    out["sum_us"] = sum(spent.values()) * 1e6 / n
    out["cells_per_batch"] = cells / len(data)
    return out


async def indexes(data: list[list[Any]], args: argparse.Namespace, folder: str) -> dict[str, float]:
    """The ledger INSERT's thread CPU per record with all its indexes, then with each dropped."""
    from costwarden.storage import sqlite as s

    rowsets = [[s._row(r) for r in batch] for batch in data]
    n = sum(len(b) for b in rowsets)

    def insert_all(conn: Any) -> float:
        cpu = thread_cpu()
        for rows in rowsets:
            conn.execute("BEGIN IMMEDIATE")
            ledger_insert(conn, rows)
            conn.execute("COMMIT")
        return (thread_cpu() - cpu) * 1e6 / n

    probe = await open_store(os.path.join(folder, "probe.db"), args.pragma)
    names = await probe._run(
        lambda conn: [
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'ledger'")
        ]
    )
    await probe.close()
    out: dict[str, float] = {}
    for drop in (None, *names):
        store = await open_store(os.path.join(folder, f"idx-{drop}.db"), args.pragma)
        try:
            if drop is not None and not drop.startswith("sqlite_autoindex"):
                await store._run(lambda conn, d=drop: conn.execute(f"DROP INDEX {d}"))
            elif drop is not None:
                continue  # the primary key's: idempotence needs it
            out["all" if drop is None else f"without_{drop}"] = await store._run(insert_all)
        finally:
            await store.close()
    return out


async def one_run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for shape in args.shapes:
        data = batches(shape, args.records, args.batch, args.rate, args.seed)
        with tempfile.TemporaryDirectory(prefix="sqlw-", dir=args.dir) as folder:
            result[shape] = {"total": await total(data, args, folder)}
            if args.split:
                result[shape]["split"] = await split(data, args, folder)
            if args.indexes:
                result[shape]["indexes"] = await indexes(data, args, folder)
    return result


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    first = runs[0]
    if isinstance(first, dict):
        return {k: medians([r[k] for r in runs]) for k in first}
    return statistics.median(runs)


def show(label: str, result: dict[str, Any]) -> None:
    for shape, parts in result.items():
        for part, figures in parts.items():
            text = ", ".join(f"{k} {v:,.2f}" for k, v in figures.items())
            print(f"{label:>10} {shape:>8} {part:>8}: {text}", flush=True)


def run_trees(args: argparse.Namespace) -> None:
    """Each tree's runs in a child process of its own (its src/ first), trees alternating."""
    trees = [str(Path(t).resolve()) for t in args.trees.split(",")]
    passed = [a for a in sys.argv[1:] if not a.startswith("--trees")]
    if "--trees" in sys.argv:
        at = sys.argv.index("--trees")
        passed = sys.argv[1:at] + sys.argv[at + 2 :]
    found: dict[str, list[dict[str, Any]]] = {t: [] for t in trees}
    for _ in range(args.runs):
        for tree in trees:
            env = {**os.environ, "PYTHONPATH": f"{tree}/src"}
            cmd = [sys.executable, __file__, *passed, "--runs", "1", "--json-only"]
            out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
            found[tree].append(json.loads(out.strip().splitlines()[-1]))
            show(Path(tree).name or tree, found[tree][-1])
    print(f"medians of {args.runs} runs, load {os.getloadavg()}")
    summary = {tree: medians(runs) for tree, runs in found.items()}
    for tree, result in summary.items():
        show(Path(tree).name or tree, result)
    save(args, {"trees": summary, "runs": found, "load": os.getloadavg()})


def save(args: argparse.Namespace, data: dict[str, Any]) -> None:
    out = ROOT / "bench" / "results" / f"sqlite_write_{args.label}.json"
    out.write_text(json.dumps({"args": {k: v for k, v in vars(args).items()}, **data}, indent=2, default=str))
    print(f"saved {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--rate", type=float, default=5000.0, help="records a second of traffic")
    p.add_argument("--fold-every", type=float, default=5.0, help="seconds of traffic between folds")
    p.add_argument("--shapes", type=lambda s: s.split(","), default=list(SHAPES))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--split", action="store_true")
    p.add_argument("--indexes", action="store_true")
    p.add_argument("--pragma", action="append", default=[], help="e.g. cache_size=-65536 (the writer's)")
    p.add_argument("--trees", help="comma-separated checkouts, run alternately")
    p.add_argument("--dir", default=None, help="where the database files go (default: the temp folder)")
    p.add_argument("--label", default="run")
    p.add_argument("--json-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.trees:
        run_trees(args)
        return
    runs = []
    for _ in range(args.runs):
        runs.append(asyncio.run(one_run(args)))
        if not args.json_only:
            show("run", runs[-1])
    if args.json_only:
        print(json.dumps(runs[0]))
        return
    result = medians(runs)
    print(f"medians of {args.runs} runs, load {os.getloadavg()}")
    show("median", result)
    save(args, {"median": result, "runs": runs, "load": os.getloadavg()})


if __name__ == "__main__":
    main()
