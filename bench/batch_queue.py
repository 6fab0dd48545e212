#!/usr/bin/env python
"""Batch queue throughput: jobs drained per second, on SQLite and on PostgreSQL.

    .venv/bin/python bench/batch_queue.py [--backend sqlite|postgres|both] [--jobs 2000] [--reps 3]
        [--postgres postgresql://127.0.0.1:5432/DB] [--concurrency 16]

Three measures per backend, each the median of `--reps` runs:
- `queue`: the queue adapter alone, in one process: `--concurrency` workers claim (8 at a time)
  and finish jobs until the batch is drained, then it is closed (output file written). This is
  the ceiling the queue's database puts on draining.
- `gateway`: a real `costwarden serve` drains a batch of `--jobs` requests through its whole
  chain (authenticate, route, admit, forward, meter, record) to a local upstream that answers at
  once; timed from `POST /v1/batches` to `completed` as the Batch API reports it. The baseline,
  run on the same gateway just after: realtime requests for 5 s, closed loop with wrk and
  `--concurrency` connections; `ratio` is batch jobs/s over realtime requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import asyncpg
import httpx
import yaml
from aiohttp import web

from costwarden.domain.batch import COMPLETION_WINDOW_S, Batch, BatchStatus, Job, JobResult
from costwarden.ports import BatchBackend
from costwarden.storage.factory import open_queue

KEY = "cw_bench_0123456789abcdefBENCH"
REPLY = {
    "id": "x", "object": "chat.completion", "created": 0, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
}  # fmt: skip


async def reset(url: str) -> None:
    if url.startswith("postgres"):
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("DROP TABLE IF EXISTS batch_files, batches, batch_jobs")
        finally:
            await conn.close()


async def queue_run(url: str, jobs: int, concurrency: int) -> float:
    """Jobs per second drained by `concurrency` in-process workers on the queue alone."""
    await reset(url)
    queue: BatchBackend = open_queue(url)
    await queue.open()
    try:
        now = time.time()
        batch = Batch("batch_bench", "t", "k", "/v1/chat/completions", "file-in", BatchStatus.IN_PROGRESS, now,
                      now + COMPLETION_WINDOW_S)  # fmt: skip
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
        queued = [Job(f"j{i}", batch.id, "k", batch.endpoint, f"c{i}", body, f"r{i}", 0, now, i) for i in range(jobs)]
        await queue.create_batch(batch, queued, [])
        reply = json.dumps(REPLY).encode()
        started = time.perf_counter()

        async def worker(name: str) -> None:
            while claimed := await queue.claim(name, 8, time.time(), 60):
                for job in claimed:
                    await queue.finish(job, JobResult(200, reply, job.request_id), time.time())

        await asyncio.gather(*(worker(f"w{i}") for i in range(concurrency)))
        assert await queue.finalize(time.time()) == [batch.id]
        return jobs / (time.perf_counter() - started)
    finally:
        await queue.close()


def line(i: int) -> bytes:
    body = {"model": "m", "messages": [{"role": "user", "content": f"n{i}"}]}
    item = {"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}
    return json.dumps(item).encode() + b"\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_upstream() -> str:
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(REPLY)

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    port = free_port()
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()

    threading.Thread(target=serve, daemon=True).start()
    ready.wait(10)
    return f"http://127.0.0.1:{port}"


def realtime(base: str, seconds: float, concurrency: int) -> float:
    """The baseline: realtime requests to the same gateway, closed loop with wrk (`--concurrency`
    connections), per second; NaN when wrk is not installed (bench/setup installs it)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return float("nan")
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "n"}]})
    env = {**os.environ, "BENCH_BODY": body, "BENCH_AUTH": KEY}
    script = str(Path(__file__).resolve().parent / "post.lua")
    argv = [wrk, "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "-s", script, base + "/v1/chat/completions"]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"the realtime baseline got errors:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def gateway_run(url: str, upstream: str, jobs: int, concurrency: int) -> tuple[float, float]:
    """Jobs per second a real gateway drains, from batch creation to `completed`; and the realtime
    baseline on the same gateway just after."""
    asyncio.run(reset(url))
    work = Path(tempfile.mkdtemp(prefix="cw-bench-batch-"))
    ledger = url if url.startswith("postgres") else f"sqlite:///{work / 'ledger.db'}"
    config = {
        "storage": {"ledger": ledger, "spool_dir": str(work / "spool")},
        "teams": [{"name": "t", "projects": ["p"]}],
        "environments": ["prod"],
        "deployments": [
            {"name": "m", "protocol": "openai", "upstream": upstream, "pricing": {"per_request": "0.0001"}}
        ],
        "keys": [{"id": "bench", "key": KEY, "team": "t", "project": "p", "environment": "prod"}],
        "batch": {"concurrency": concurrency, "rate_per_second": 100_000, "poll_seconds": 0.2},
    }
    (work / "c.yaml").write_text(yaml.safe_dump(config))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    exe = str(Path(sys.executable).parent / "costwarden")
    proc = subprocess.Popen([exe, "serve", "-c", str(work / "c.yaml"), "--port", str(port)], cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as http:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            lines = b"".join(line(i) for i in range(jobs))
            upload = {"file": ("in.jsonl", io.BytesIO(lines))}
            file_id = http.post("/v1/files", files=upload, data={"purpose": "batch"}).json()["id"]
            started = time.perf_counter()
            body = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
            batch_id = http.post("/v1/batches", json=body).json()["id"]
            while (batch := http.get(f"/v1/batches/{batch_id}").json())["status"] != "completed":
                time.sleep(0.02)
            elapsed = time.perf_counter() - started
            assert batch["request_counts"]["completed"] == jobs, batch
        return jobs / elapsed, realtime(base, 5.0, concurrency)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)


async def ensure_database(url: str) -> None:
    """Create the bench's PostgreSQL database when it does not exist."""
    base, _, name = url.rpartition("/")
    conn = await asyncpg.connect(base + "/postgres")
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--postgres", default="postgresql://127.0.0.1:5432/costwarden_bench")
    args = parser.parse_args()
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    upstream = start_upstream()
    if "postgres" in backends:
        asyncio.run(ensure_database(args.postgres))
    print(f"{args.jobs} jobs, concurrency {args.concurrency}, median of {args.reps} runs (jobs/s)")
    print(f"{'backend':<10} {'queue alone':>12} {'gateway batch':>14} {'gateway realtime':>17} {'ratio':>6}")
    for backend in backends:
        queue_rates, gateway_rates, realtime_rates = [], [], []
        for _ in range(args.reps):
            tmp = Path(tempfile.mkdtemp(prefix="cw-bench-q-"))
            url = f"sqlite:///{tmp / 'q.db'}" if backend == "sqlite" else args.postgres
            queue_rates.append(asyncio.run(queue_run(url, args.jobs, args.concurrency)))
            shutil.rmtree(tmp, ignore_errors=True)
            drained, baseline = gateway_run(
                "sqlite" if backend == "sqlite" else args.postgres, upstream, args.jobs, args.concurrency
            )
            gateway_rates.append(drained)
            realtime_rates.append(baseline)
        batch_rate, realtime_rate = statistics.median(gateway_rates), statistics.median(realtime_rates)
        print(
            f"{backend:<10} {statistics.median(queue_rates):>12.0f} {batch_rate:>14.0f} {realtime_rate:>17.0f} "
            f"{batch_rate / realtime_rate:>6.2f}"
        )


if __name__ == "__main__":
    main()
