"""`costwarden bench`: load a deployment (through the gateway or straight at the model server),
measure latency, throughput, errors and cost per unit, optionally search the highest rate meeting an SLO."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Literal

import typer

from costwarden.bench import loop, markdown, results
from costwarden.bench.api import make_target, run_plan
from costwarden.bench.live import LiveView
from costwarden.bench.loadgen import Load
from costwarden.bench.payloads import PayloadError, from_jsonl, generated
from costwarden.bench.runner import Plan, TargetDown
from costwarden.cli.common import ConfigOption, config_or_exit, console, errors
from costwarden.cli.hardware import profile_or_exit
from costwarden.domain.hardware import HardwareProfile
from costwarden.domain.pricing import PriceSheet
from costwarden.domain.rate_search import RateSearch
from costwarden.domain.slo import Slo, SloError, parse_slo


def slo_or_exit(text: str | None) -> Slo | None:
    if text is None:
        return None
    try:
        return parse_slo(text)
    except SloError as exc:
        errors.print(f"[bold red]bad --slo:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc


def fail(message: str) -> typer.Exit:
    errors.print(f"[bold red]bench:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def bench(
    url: str = typer.Argument(..., help="Base URL: the gateway (http://127.0.0.1:8700) or the model server."),
    deployment: str = typer.Option(..., "--deployment", "-d", help="Deployment: OpenAI `model` or V2 model name."),
    protocol: str = typer.Option("openai", help="openai | v2"),
    config: Path | None = ConfigOption,
    api_key: str | None = typer.Option(None, envvar="COSTWARDEN_API_KEY", help="Bearer key (a costwarden key)."),
    rate: float | None = typer.Option(None, help="Open loop: arrivals per second."),
    concurrency: int | None = typer.Option(None, help="Closed loop: requests in flight."),
    arrival: str = typer.Option("poisson", help="Open-loop arrivals: poisson | uniform."),
    duration: float = typer.Option(10.0, help="Seconds per run."),
    requests: int | None = typer.Option(None, help="Stop each run after this many requests."),
    repeat: int = typer.Option(1, min=1, max=100, help="Repeat the run (for `check`'s statistics)."),
    requests_file: Path | None = typer.Option(None, "--requests-file", help="JSONL: one request body per line."),
    stream: bool = typer.Option(False, help="OpenAI: stream, measuring TTFT and TPOT."),
    max_tokens: int = typer.Option(32, min=1, help="Generated OpenAI requests: max_tokens."),
    slo: str | None = typer.Option(None, help='SLO to judge runs by, e.g. "p99<=250ms" or "ttft<=200ms, tpot<=50ms".'),
    search: bool = typer.Option(False, help="Search the highest arrival rate meeting --slo (MLPerf Server-style)."),
    search_start: float = typer.Option(1.0, help="Search: first rate."),
    search_max: float = typer.Option(1000.0, help="Search: highest rate tried."),
    tolerance: float = typer.Option(0.1, help="Search: stop when the bracket is within this fraction."),
    hardware: str | None = typer.Option(None, help="Hardware profile (config `hardware:` or catalogue) for $/h."),
    priced_as: str | None = typer.Option(None, help="Config deployment whose prices apply (default: --deployment)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write results JSON here."),
    markdown_out: Path | None = typer.Option(None, "--markdown", help="Write a markdown summary here."),
    timeout: float = typer.Option(60.0, help="Seconds per request."),
    warmup: int = typer.Option(1, min=1, help="Requests sent before measuring (the first probes the target)."),
    seed: int = typer.Option(0, help="Seed of arrivals and generated payloads."),
) -> None:
    """Benchmark a deployment: latency percentiles, TTFT/TPOT, throughput, errors, cost per unit."""
    if protocol not in ("openai", "v2"):
        raise fail(f"--protocol must be openai or v2, not {protocol!r}")
    if arrival not in ("poisson", "uniform"):
        raise fail(f"--arrival must be poisson or uniform, not {arrival!r}")
    proto: Literal["openai", "v2"] = "openai" if protocol == "openai" else "v2"
    objective = slo_or_exit(slo)
    if search and objective is None:
        raise fail("--search needs --slo")
    if not search and (rate is None) == (concurrency is None):
        raise fail("give --rate (open loop) or --concurrency (closed loop)")
    sheet, profile = _prices(config, priced_as or deployment, hardware)
    if priced_as is not None and sheet is None:
        raise fail(f"--priced-as {priced_as!r}: no such deployment in the config (or no --config)")
    try:
        payloads = (
            from_jsonl(requests_file, proto, deployment, stream)
            if requests_file is not None
            else generated(proto, deployment, stream, 256, random.Random(seed), max_tokens)
        )
        load = Load(duration, rate=rate if not search else search_start, concurrency=None if search else concurrency,
                    arrival="uniform" if arrival == "uniform" else "poisson", requests=requests, seed=seed)  # fmt: skip
        searcher = RateSearch(search_start, search_max, min(search_start, 0.1), tolerance) if search else None
    except (PayloadError, ValueError) as exc:
        raise fail(str(exc)) from exc
    target, info = make_target(url, proto, deployment, api_key, stream, timeout)
    plan = Plan(target, info, payloads, load, repeat, objective, searcher, sheet, profile, warmup)
    view = LiveView(console)
    try:
        with view.live:
            found = loop.run(run_plan(plan, view))
    except TargetDown as exc:
        raise fail(f"the target is down or refuses the request: {exc}") from exc
    except KeyboardInterrupt:
        errors.print("bench: interrupted; no results written")
        raise typer.Exit(130) from None
    try:
        if out is not None:
            results.save(found, out)
            console.print(f"results: {out}")
        if markdown_out is not None:
            markdown_out.write_text(markdown.render(found), encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot write the results: {exc}") from exc
    if found.search is not None:
        best = found.search.best_rate
        answer = f"{best:g} req/s" if best is not None else "none (even the lowest rate missed it)"
        console.print(f"highest arrival rate meeting {found.search.slo}: {answer}", highlight=False)


def _prices(
    config: Path | None, deployment: str, hardware: str | None
) -> tuple[PriceSheet | None, HardwareProfile | None]:
    """The deployment's price sheet and the hardware profile, from the config file when one is given."""
    if config is None and hardware is None:
        return None, None
    cfg = config_or_exit(config) if config is not None else None
    dep = cfg.deployment(deployment) if cfg is not None else None
    sheet = dep.pricing.sheet() if dep is not None else None
    profile = profile_or_exit(hardware, cfg) if hardware is not None else None
    return sheet, profile
