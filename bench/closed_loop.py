"""The closed-loop scaffolding of bench/cache.py and bench/v2_paths.py: their command line, one request
function's latency (sequential) and throughput (`concurrency` closed-loop workers), rows measured in
turn and the median of repeated runs, and the results file."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

Send = Callable[[], Awaitable[None]]
Results = dict[str, dict[str, float]]  # row -> p50_ms, p99_ms, req_s
RESULTS = Path(__file__).resolve().parent / "results"


def arguments(doc: str, seconds: float) -> argparse.Namespace:
    """--seconds (per measurement, `seconds` by default), --concurrency and --repeat."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=seconds)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    return parser.parse_args()


async def measure(send: Send, seconds: float, concurrency: int) -> dict[str, float]:
    """p50 and p99 latency (ms) of `send` one at a time for `seconds`, then its rate (req/s) with
    `concurrency` workers sending back to back for as long."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        await send()
        latencies.append((time.perf_counter() - started) * 1000)
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await send()
            done += 1

    stop = time.perf_counter() + seconds
    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    quantiles = statistics.quantiles(latencies, n=100)
    return {"p50_ms": quantiles[49], "p99_ms": quantiles[98], "req_s": done / (time.perf_counter() - began)}


async def measure_rows(targets: dict[str, Send], args: argparse.Namespace) -> Results:
    """Each row warmed up (50 sends: connections, caches), then measured `args.repeat` times, the rows
    in turn within each repetition so all see the same load from the rest of the machine; medians."""
    for send in targets.values():
        for _ in range(50):
            await send()
    samples: dict[str, list[dict[str, float]]] = {}
    for _ in range(args.repeat):
        for name, send in targets.items():
            samples.setdefault(name, []).append(await measure(send, args.seconds, args.concurrency))
    return medians(samples)


def medians(samples: dict[str, list[dict[str, float]]]) -> Results:
    """Each row's figures, the median over its runs."""
    return {name: {key: statistics.median(s[key] for s in runs) for key in runs[0]} for name, runs in samples.items()}


def save(name: str, args: argparse.Namespace, results: Results) -> None:
    """bench/results/`name`.json: the arguments and the results."""
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=2) + "\n")
