#!/usr/bin/env python
"""The in-process cost of admission alone: the real admit stage, policy and in-process counter
store, with the governance of `bench/run.py`'s costwarden-gov target (one budget, a per-key rate
limit on requests and tokens, a per-deployment concurrency quota), on the bench's request body.

    .venv/bin/python bench/admission.py [--requests 20000] [--reps 5] [--profile]

Each repetition admits and settles `--requests` requests one after the other in one event loop
(enter, then settle, then the settlement task runs) and reports CPU microseconds per request,
with and without governance (without: the policy is empty, so admission is the fast path). The
medians of the repetitions are printed, plus the share of `--gateway-us` (the gateway's CPU per
request with metering only, from bench/run.py) that admission adds.
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
from pathlib import Path

import orjson
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import GOVERNANCE

from costwarden.chain.admit import Admit, StoreHealth
from costwarden.chain.exchange import Exchange
from costwarden.chain.policy import policy_from_config
from costwarden.chain.route import Route
from costwarden.config.models import Config
from costwarden.domain.keys import KeyIdentity
from costwarden.domain.record import Protocol
from costwarden.storage.memory_counters import MemoryCounters

CHAT = "/v1/chat/completions"
BODY = {"model": "bench-model", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}
IDENTITY = KeyIdentity("bench", "bench", "load", "prod")


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


async def run(cfg: Config, requests: int) -> float:
    """CPU seconds per request of admit + settle."""
    try:  # settle as app/runtime.py does with in-process state
        stage = Admit(policy_from_config(cfg), MemoryCounters(), StoreHealth(), settle_inline=True)
    except TypeError:  # a version before settle_inline: one task per settlement
        stage = Admit(policy_from_config(cfg), MemoryCounters(), StoreHealth())
    route = Route.of(cfg.deployments[0])
    raw = orjson.dumps(BODY)
    gc.collect()
    started = time.process_time()
    for i in range(requests):
        exchange = Exchange(f"req-{i}", "POST", CHAT, b"", [], raw, Protocol.OPENAI, CHAT)
        exchange.identity, exchange.route, exchange.parsed_body = IDENTITY, route, orjson.loads(raw)
        await stage.enter(exchange)
        exchange.cost = route.sheet.input_per_1m or 0  # any cost: settle charges it
        await stage.settle(exchange)
        await asyncio.sleep(0)  # let the settlement task run, as the event loop would
    await stage.drain()
    return (time.process_time() - started) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--gateway-us", type=float, default=316.0, help="gateway CPU µs/request, metering only")
    parser.add_argument("--profile", action="store_true", help="cProfile one governed repetition")
    args = parser.parse_args()
    governed, bare = config(True), config(False)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(asyncio.run, run(governed, args.requests))
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
        return
    with_gov, without = [], []
    for _ in range(args.reps):
        without.append(asyncio.run(run(bare, args.requests)) * 1e6)
        with_gov.append(asyncio.run(run(governed, args.requests)) * 1e6)
    added = statistics.median(with_gov) - statistics.median(without)
    print(f"requests per repetition: {args.requests}, repetitions: {args.reps}")
    for name, values in (("without governance", without), ("with governance", with_gov)):
        runs = sorted(round(v, 1) for v in values)
        print(f"{name + ':':20}{statistics.median(values):7.1f} CPU µs/request  {runs}")
    share = added / (args.gateway_us + added)
    print(f"admission adds {added:.1f} µs/request: {share:.1%} of throughput at {args.gateway_us:.0f} µs/request")


if __name__ == "__main__":
    main()
