"""Shared pieces of bench/cache.py and bench/v2_paths.py: one request function's latency (sequential)
and throughput (`concurrency` closed-loop workers), and the median of repeated runs."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

Send = Callable[[], Awaitable[None]]


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


def medians(samples: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Each row's figures, the median over its runs."""
    return {name: {key: statistics.median(s[key] for s in runs) for key in runs[0]} for name, runs in samples.items()}
