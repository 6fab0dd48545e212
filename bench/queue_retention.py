#!/usr/bin/env python
"""Batch queue retention: how long one prune step holds the queue's database, on SQLite and PostgreSQL.

    .venv/bin/python bench/queue_retention.py [--backend sqlite|postgres|both] [--batches 10] [--jobs 5000]
        [--step 1000] [--reps 3] [--postgres postgresql://127.0.0.1:5432/DB]

Seeds `--batches` finished batches of `--jobs` jobs each (a 300-byte request and a 600-byte answer
per job, and the output files their close writes), then prunes them all with `prune_queue` in steps
of `--step` rows, as the leading gateway does. Meanwhile a second connection (another gateway's
worker) claims from an unfinished batch in a loop. Reported, medians of `--reps` runs: the step
durations (median, p99, max: how long a step holds the write lock), the whole purge's time, and the
other worker's claim latency (median, max) during the purge, against the same purge in one single
step (`--step` = every row: what an unbounded purge would hold).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg

from costwarden.domain.batch import COMPLETION_WINDOW_S, Batch, BatchStatus, Job
from costwarden.ports import BatchBackend
from costwarden.storage.factory import open_queue

T0 = 1_700_000_000.0
BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 240}]}).encode()
RESULT = json.dumps({"choices": [{"message": {"content": "y" * 540}}], "usage": {"total_tokens": 99}}).encode()


def batch_of(batch_id: str, created: float) -> Batch:
    return Batch(batch_id, "t", "k", "/v1/chat/completions", "", BatchStatus.IN_PROGRESS, created,
                 created + COMPLETION_WINDOW_S)  # fmt: skip


def jobs_of(batch: Batch, n: int) -> list[Job]:
    return [Job(f"{batch.id}-{i}", batch.id, "k", batch.endpoint, f"c{i}", BODY, f"r{batch.id}{i}", 0,
                batch.created_at, i + 1) for i in range(n)]  # fmt: skip


async def seed(url: str, path: str | None, batches: int, jobs: int) -> None:
    """Finished batches (every job answered, closed with an output file), and one batch still running."""
    if path is None:
        conn = await asyncpg.connect(url)
        await conn.execute("DROP TABLE IF EXISTS batch_files, batches, batch_jobs, job_callbacks")
        await conn.close()
    queue: BatchBackend = open_queue(url)
    await queue.open()
    for b in range(batches):
        batch = batch_of(f"batch_{b:03d}", T0 + b)
        await queue.create_batch(batch, jobs_of(batch, jobs), [])
    live = batch_of("batch_live", time.time())
    await queue.create_batch(live, jobs_of(live, 20_000), [])
    answer = "UPDATE batch_jobs SET state = 'done', status_code = 200, result = {p}1, finished_at = {p}2 " \
             "WHERE batch_id <> 'batch_live'"  # fmt: skip
    if path is not None:
        with sqlite3.connect(path) as conn:
            conn.execute(answer.format(p="?"), (RESULT, T0 + batches))
    else:
        conn = await asyncpg.connect(url)
        await conn.execute(answer.format(p="$"), RESULT, T0 + batches)
        await conn.close()
    assert len(await queue.finalize(T0 + batches + 1)) == batches
    await queue.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def purge(url: str, step: int) -> dict[str, float]:
    """Prune every finished batch in steps of `step` rows while another connection claims jobs."""
    queue: BatchBackend = open_queue(url)
    other: BatchBackend = open_queue(url)
    await queue.open()
    await other.open()
    steps: list[float] = []
    claims: list[float] = []
    done = asyncio.Event()

    async def claimer() -> None:
        while not done.is_set():
            began = time.perf_counter()
            await other.claim("other", 1, time.time(), 600)
            claims.append(time.perf_counter() - began)
            await asyncio.sleep(0.002)

    task = asyncio.create_task(claimer())
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    while True:
        began = time.perf_counter()
        pruned = await queue.prune_finished(T0 + 10 * 86_400, step)
        steps.append(time.perf_counter() - began)
        if not pruned.total:
            break
    total = time.perf_counter() - started
    done.set()
    await task
    await queue.close()
    await other.close()
    return {
        "steps": len(steps), "step_median_ms": statistics.median(steps) * 1000, "step_p99_ms": pct(steps, 0.99) * 1000,
        "step_max_ms": max(steps) * 1000, "total_s": total,
        "claim_median_ms": statistics.median(claims) * 1000, "claim_max_ms": max(claims) * 1000,
    }  # fmt: skip


async def run(backend: str, url: str, path: str | None, args: argparse.Namespace) -> None:
    every = args.batches * (args.jobs + 1) + 1  # one step for everything
    results: dict[int, list[dict[str, float]]] = {args.step: [], every: []}
    for _ in range(args.reps):
        for step in (args.step, every):  # A B A B ...
            if path is not None:
                for leftover in Path(path).parent.glob(Path(path).name + "*"):
                    leftover.unlink()
            await seed(url, path, args.batches, args.jobs)
            results[step].append(await purge(url, step))
    for step, runs in results.items():
        medians = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        label = f"step {step}" if step != every else "one step (unbounded)"
        print(f"{backend:8} {label:22} " + "  ".join(f"{k}={v:.1f}" for k, v in medians.items()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--step", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--postgres", default="postgresql://127.0.0.1:5432/cw_files_bench")
    args = parser.parse_args()
    print(f"{args.batches} finished batches x {args.jobs} jobs; medians of {args.reps} runs (times in ms, total in s)")
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as folder:
            path = str(Path(folder) / "queue.db")
            asyncio.run(run("sqlite", f"sqlite:///{path}", path, args))
    if args.backend in ("postgres", "both"):
        asyncio.run(run("postgres", args.postgres, None, args))


if __name__ == "__main__":
    main()
