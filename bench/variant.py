#!/usr/bin/env python
"""The cost of the variant decision: the real route and degrade stages on the bench's request body.

    .venv/bin/python bench/variant.py [--requests 20000] [--reps 5]

Each repetition routes `--requests` requests one after the other, with and without the degrade
stage after route, in three cases: a deployment without variants (the stage's first test), one with
variants while nothing is degraded (the usual case: one set lookup), and one whose budget is
degraded (scope match, then the request rebuilt for the variant's upstream model). It prints the
medians of this process's CPU microseconds per request; the difference with route alone is what
the decision adds.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Callable

import orjson

from costwarden.chain.degrade import Degrade, DegradeScope
from costwarden.chain.exchange import Exchange
from costwarden.chain.route import RouteStage
from costwarden.chain.target import RouteTable
from costwarden.config.models import Deployment
from costwarden.domain.budget import BudgetScope
from costwarden.domain.keys import KeyIdentity
from costwarden.domain.record import Protocol

CHAT = "/v1/chat/completions"
IDENTITY = KeyIdentity("bench", "bench", "load", "prod")
PRICES = {"input_per_1m": "0.50", "output_per_1m": "1.50"}
VARIANT = {"name": "small", "upstream": "http://127.0.0.1:9", "model": "small", "pricing": PRICES}
TABLE = RouteTable(
    [
        Deployment.model_validate({"name": "plain", "protocol": "openai", "upstream": "http://127.0.0.1:9"}),
        Deployment.model_validate(
            {"name": "big", "protocol": "openai", "upstream": "http://127.0.0.1:9", "pricing": PRICES,
             "variants": [VARIANT]}
        ),
    ]
)  # fmt: skip
SCOPES = [DegradeScope("bench-month", BudgetScope.of({"team": "bench"}), frozenset(), frozenset(), frozenset())]
CASES: dict[str, tuple[str, dict[str, int]]] = {
    "no variants": ("plain", {"bench-month": 1}),
    "variants, not degraded": ("big", {}),
    "degraded": ("big", {"bench-month": 1}),
}


def body(model: str) -> bytes:
    return orjson.dumps({"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16})


async def run(model: str, degraded: dict[str, int] | None, requests: int) -> float:
    """CPU µs per request for route (+ degrade unless `degraded` is None)."""
    route = RouteStage(TABLE, 0)
    current: Callable[[], dict[str, int]] = lambda: degraded or {}  # noqa: E731
    degrade = Degrade(TABLE, SCOPES, current)
    raw = body(model)
    gc.collect()
    started = time.process_time()
    for i in range(requests):
        exchange = Exchange(f"r{i}", "POST", CHAT, b"", [], raw, Protocol.OPENAI, CHAT)
        exchange.identity = IDENTITY
        await route.enter(exchange)
        if degraded is not None:
            await degrade.enter(exchange)
    return (time.process_time() - started) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, list[float]] = {name: [] for name in ("route alone", *CASES)}
    for _ in range(args.reps):  # interleaved, so a noisy neighbour hits all alike
        results["route alone"].append(asyncio.run(run("big", None, args.requests)))
        for name, (model, degraded) in CASES.items():
            results[name].append(asyncio.run(run(model, degraded, args.requests)))
    base = statistics.median(results["route alone"])
    print(f"requests per repetition: {args.requests}, repetitions: {args.reps}; CPU µs/request (median)")
    for name, values in results.items():
        median = statistics.median(values)
        added = "" if name == "route alone" else f"   adds {median - base:+.2f}"
        print(f"{name + ':':28}{median:8.2f}{added}   {sorted(round(v, 2) for v in values)}")


if __name__ == "__main__":
    main()
