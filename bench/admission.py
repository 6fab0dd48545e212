#!/usr/bin/env python
"""The cost of admission alone: the real admit stage, policy and counter store (in-process, or
Redis), with the governance of `bench/run.py`'s costwarden-gov target (one budget, a per-key rate
limit on requests and tokens, a per-deployment concurrency quota), on the bench's request body.

    .venv/bin/python bench/admission.py [--state memory|redis|both] [--requests 20000] [--reps 5] [--concurrency 1]
    .venv/bin/python bench/admission.py --profile [--state redis]

Each repetition admits and settles `--requests` requests (`--concurrency` clients, each one request
after the other) in one event loop
(enter, then finish as the runtime does: at once in-process, in a task with Redis) and reports
this process's CPU microseconds per request with and without governance (without: the policy is
empty, so admission is the fast path), and the p50/p99 wall time of the admit stage alone (with
Redis: one round trip). Every governed request must be admitted (the budget is seeded first, as
the governor does at start), or the run stops: a bench of the refusal path measures nothing.
The medians of the repetitions are printed, plus the share of `--gateway-us` (the gateway's CPU
per request with metering only, from bench/run.py) that admission adds.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import GOVERNANCE

from costwarden.chain.admit import Admit, StoreHealth
from costwarden.chain.exchange import Exchange
from costwarden.chain.policy import policy_from_config
from costwarden.chain.target import Route
from costwarden.config.models import Config
from costwarden.domain.admission import BudgetSeed
from costwarden.domain.budget import seed_key
from costwarden.domain.keys import KeyIdentity
from costwarden.domain.record import Protocol
from costwarden.ports import CounterStore
from costwarden.storage.memory_counters import MemoryCounters

CHAT = "/v1/chat/completions"
BODY = {"model": "bench-model", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}
IDENTITY = KeyIdentity("bench", "bench", "load", "prod")
REDIS = "redis://127.0.0.1:6379/0"


def config(governed: bool) -> Config:
    data = {
        "environments": ["prod"],
        "teams": [{"name": "bench", "projects": ["load"]}],
        "deployments": [
            {
                "name": "bench-model",
                "protocol": "openai",
                "upstream": "http://127.0.0.1:9",
                "pricing": {"input_per_1m": "0.50", "output_per_1m": "1.50"},
            }
        ],
    }
    if governed:
        data.update(yaml.safe_load(GOVERNANCE))
    return Config.model_validate(data)


@dataclass
class Sample:
    cpu_us: float  # this process's CPU per request (admit + settle)
    p50_us: float  # wall time of the admit stage
    p99_us: float


async def _store(state: str) -> tuple[CounterStore, str | None]:
    if state == "memory":
        return MemoryCounters(), None
    from costwarden.storage.redis_counters import RedisCounters

    namespace = f"cwbench:{uuid.uuid4().hex[:12]}:"
    return RedisCounters(REDIS, namespace=namespace), namespace


async def _drop(namespace: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS)
    try:
        keys = [key async for key in client.scan_iter(match=f"{namespace}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def run(cfg: Config, requests: int, state: str, concurrency: int = 1) -> Sample:
    store, namespace = await _store(state)
    policy = policy_from_config(cfg)
    await store.restore([BudgetSeed(seed_key(b), ()) for b in policy.budgets])  # as the governor does at start
    policy.generation = await store.restore(())  # admissions check the budget definitions' generation
    stage = Admit(policy, store, StoreHealth(), settle_inline=state == "memory")
    route = Route.of(cfg.deployments[0])
    raw = orjson.dumps(BODY)
    walls: list[float] = []
    try:
        for i in range(min(200, requests)):  # warm-up: scripts loaded, connections open
            await _one(stage, route, raw, f"warm-{i}", walls, policy.empty)
        walls.clear()
        gc.collect()
        started = time.process_time()

        async def client(first: int) -> None:
            for i in range(first, requests, concurrency):
                await _one(stage, route, raw, f"req-{i}", walls, policy.empty)

        await asyncio.gather(*(client(c) for c in range(concurrency)))
        await stage.drain()
        cpu = (time.process_time() - started) / requests
    finally:
        await store.close()
        if namespace is not None:
            await _drop(namespace)
    walls.sort()
    return Sample(cpu * 1e6, walls[len(walls) // 2] * 1e6, walls[int(len(walls) * 0.99)] * 1e6)


async def _one(stage: Admit, route: Route, raw: bytes, rid: str, walls: list[float], empty: bool) -> None:
    exchange = Exchange(rid, "POST", CHAT, b"", [], raw, Protocol.OPENAI, CHAT)
    exchange.identity, exchange.route, exchange.parsed_body = IDENTITY, route, orjson.loads(raw)
    began = time.perf_counter()
    await stage.enter(exchange)
    walls.append(time.perf_counter() - began)
    if exchange.held is None and not empty:
        raise SystemExit(f"request {rid} was not admitted: the bench would measure the wrong path")
    exchange.cost = route.sheet.input_per_1m or 0  # any cost: settle charges it
    await stage.finish(exchange)  # after the last byte, as the chain does
    await asyncio.sleep(0)  # let a settlement task run, as the event loop would


def _row(name: str, values: list[float]) -> str:
    runs = sorted(round(v, 1) for v in values)
    return f"{name + ':':34}{statistics.median(values):8.1f}  {runs}"


def measure(state: str, requests: int, reps: int, gateway_us: float, concurrency: int) -> None:
    governed, bare = config(True), config(False)
    with_gov: list[Sample] = []
    without: list[Sample] = []
    for _ in range(reps):  # interleaved, so a noisy neighbour hits both alike
        without.append(asyncio.run(run(bare, requests, state, concurrency)))
        with_gov.append(asyncio.run(run(governed, requests, state, concurrency)))
    print(f"state: {state}; requests per repetition: {requests}, repetitions: {reps}, concurrency: {concurrency}")
    print(_row("CPU µs/request without governance", [s.cpu_us for s in without]))
    print(_row("CPU µs/request with governance", [s.cpu_us for s in with_gov]))
    print(_row("admit stage p50 µs (wall)", [s.p50_us for s in with_gov]))
    print(_row("admit stage p99 µs (wall)", [s.p99_us for s in with_gov]))
    added = statistics.median(s.cpu_us for s in with_gov) - statistics.median(s.cpu_us for s in without)
    share = added / (gateway_us + added)
    print(f"admission adds {added:.1f} CPU µs/request: {share:.1%} of throughput at {gateway_us:.0f} µs/request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--state", choices=("memory", "redis", "both"), default="memory")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--gateway-us", type=float, default=316.0, help="gateway CPU µs/request, metering only")
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight at once (clients)")
    parser.add_argument("--profile", action="store_true", help="cProfile one governed repetition")
    args = parser.parse_args()
    states = ("memory", "redis") if args.state == "both" else (args.state,)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(asyncio.run, run(config(True), args.requests, states[-1], args.concurrency))
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
        return
    for state in states:
        measure(state, args.requests, args.reps, args.gateway_us, args.concurrency)


if __name__ == "__main__":
    main()
