"""Bench from Python (the pytest plugin, scripts): build a target and run a plan into `Results`."""

from __future__ import annotations

import random
from typing import Literal

from costwarden.bench import loop
from costwarden.bench.exchange import Sample, Target
from costwarden.bench.loadgen import Load
from costwarden.bench.payloads import endpoint, generated
from costwarden.bench.results import Results, Run, TargetInfo
from costwarden.bench.runner import Observer, Plan, execute

Protocol = Literal["openai", "v2"]


def make_target(
    url: str, protocol: Protocol, deployment: str, api_key: str | None, stream: bool, timeout_s: float
) -> tuple[Target, TargetInfo]:
    """The endpoint to post to, and how the results file describes it."""
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {api_key}"} if api_key else {})
    target = Target(endpoint(url, protocol, deployment), headers, stream and protocol == "openai", timeout_s)
    info = TargetInfo(url=url, protocol=protocol, deployment=deployment, stream=target.stream, via_gateway=False)
    return target, info


async def run_plan(plan: Plan, observer: Observer) -> Results:
    """Execute the plan; the results say whether the gateway metered the requests."""
    found = await execute(plan, observer)
    via = any(r.metered_usd is not None for r in found.runs)
    return found.model_copy(update={"target": plan.info.model_copy(update={"via_gateway": via})})


class Quiet:
    """An observer that shows nothing."""

    def run_started(self, label: str, expected: int | None) -> None:
        return None

    def sample(self, sample: Sample) -> None:
        return None

    def run_finished(self, run: Run) -> None:
        return None


def bench(
    url: str,
    deployment: str,
    protocol: Protocol = "openai",
    *,
    concurrency: int | None = 1,
    rate: float | None = None,
    duration_s: float = 10.0,
    requests: int | None = None,
    repeats: int = 1,
    stream: bool = False,
    api_key: str | None = None,
    max_tokens: int = 32,
    seed: int = 0,
    timeout_s: float = 60.0,
) -> Results:
    """Run a bench with generated payloads (closed loop unless `rate` is given) and return its results."""
    target, info = make_target(url, protocol, deployment, api_key, stream, timeout_s)
    payloads = generated(protocol, deployment, stream, 256, random.Random(seed), max_tokens)
    closed = None if rate is not None else concurrency
    load = Load(duration_s, rate=rate, concurrency=closed, requests=requests, seed=seed)
    return loop.run(run_plan(Plan(target, info, payloads, load, repeats), Quiet()))
