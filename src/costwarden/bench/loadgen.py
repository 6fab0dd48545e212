"""The load generator: open loop (arrivals at a fixed rate, whatever the server does, so queueing
shows) or closed loop (a fixed number of requests in flight). One aiohttp session, one event loop."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp

from costwarden.bench.exchange import Sample, Target, send
from costwarden.bench.payloads import Payload
from costwarden.domain.arrivals import Arrival, arrival_times

OnSample = Callable[[Sample], None]


@dataclass(frozen=True, slots=True)
class Load:
    """How to load the target: `rate` (open loop) or `concurrency` (closed loop), for `duration_s`
    or until `requests` have been sent, whichever comes first."""

    duration_s: float
    rate: float | None = None
    concurrency: int | None = None
    arrival: Arrival = "poisson"
    requests: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.rate is None) == (self.concurrency is None):
            raise ValueError("give either a rate (open loop) or a concurrency (closed loop)")
        if self.duration_s <= 0 or (self.rate is not None and self.rate <= 0):
            raise ValueError("duration and rate must be above zero")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")

    @property
    def mode(self) -> str:
        return "open" if self.rate is not None else "closed"


def session(connections: int, timeout_s: float) -> aiohttp.ClientSession:
    """A client for one run: `connections` at most in flight, each request within `timeout_s`."""
    connector = aiohttp.TCPConnector(limit=connections, ttl_dns_cache=300)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s))


async def run_load(
    target: Target, payloads: Sequence[Payload], load: Load, on_sample: OnSample | None = None
) -> tuple[list[Sample], float]:
    """Run one load; the samples and the wall time from the first send to the last reply."""
    connections = max(64, load.concurrency or int((load.rate or 1) * target.timeout_s) + 1)
    async with session(min(connections, 4096), target.timeout_s) as client:
        start = time.perf_counter()
        if load.rate is not None:
            samples = await _open(client, target, payloads, load, load.rate, start, on_sample)
        else:
            samples = await _closed(client, target, payloads, load, start, on_sample)
        return samples, time.perf_counter() - start


async def _open(
    client: aiohttp.ClientSession,
    target: Target,
    payloads: Sequence[Payload],
    load: Load,
    rate: float,
    start: float,
    on_sample: OnSample | None,
) -> list[Sample]:
    rng = random.Random(load.seed)
    cycle = itertools.cycle(payloads)
    pending: set[asyncio.Task[Sample]] = set()
    for count, offset in enumerate(arrival_times(rate, load.duration_s, load.arrival, rng)):
        if load.requests is not None and count >= load.requests:
            break
        delay = start + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        late = time.perf_counter() - start - offset
        task = asyncio.create_task(send(client, target, next(cycle), offset, max(late, 0.0)))
        if on_sample is not None:
            task.add_done_callback(lambda t: on_sample(t.result()))
        pending.add(task)
    return list(await asyncio.gather(*pending)) if pending else []


async def _closed(
    client: aiohttp.ClientSession,
    target: Target,
    payloads: Sequence[Payload],
    load: Load,
    start: float,
    on_sample: OnSample | None,
) -> list[Sample]:
    deadline = start + load.duration_s
    budget = itertools.count() if load.requests is None else iter(range(load.requests))
    cycle = itertools.cycle(payloads)
    samples: list[Sample] = []

    async def worker() -> None:
        while time.perf_counter() < deadline and next(budget, None) is not None:
            sample = await send(client, target, next(cycle), time.perf_counter() - start, 0.0)
            samples.append(sample)
            if on_sample is not None:
                on_sample(sample)

    assert load.concurrency is not None
    await asyncio.gather(*(worker() for _ in range(load.concurrency)))
    return samples
