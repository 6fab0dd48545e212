"""Results as markdown: one table of runs, the search's answer and the machine, for a PR or a doc."""

from __future__ import annotations

from costwarden.bench.results import Percentiles, Results, Run
from costwarden.domain.money import format_usd


def _p(block: Percentiles | None, key: str) -> str:
    return "-" if block is None else f"{getattr(block, key):.2f}"


def run_row(run: Run) -> list[str]:
    cost = run.cost
    return [
        run.label,
        f"{run.offered_rate:g}/s" if run.offered_rate is not None else f"c={run.concurrency}",
        str(run.ok),
        f"{run.error_rate * 100:.2f}%",
        f"{run.throughput_rps:.1f}",
        _p(run.latency_ms, "p50"),
        _p(run.latency_ms, "p90"),
        _p(run.latency_ms, "p99"),
        _p(run.latency_ms, "max"),
        _p(run.ttft_ms, "p99"),
        _p(run.tpot_ms, "p50"),
        format_usd(cost.per_1k_requests) if cost else "-",
        format_usd(cost.per_1m_tokens) if cost and cost.per_1m_tokens is not None else "-",
        "-" if run.slo_violations is None else ("met" if not run.slo_violations else "missed"),
    ]


HEADER = [
    "run", "load", "ok", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
    "TTFT p99", "TPOT p50", "$/1k req", "$/1M tok", "SLO",
]  # fmt: skip


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render(results: Results) -> str:
    t = results.target
    parts = [
        f"## costwarden bench: {t.deployment} ({t.protocol}{', stream' if t.stream else ''})",
        "",
        f"Target {t.url} ({'through the gateway' if t.via_gateway else 'direct'}), costwarden "
        f"{results.costwarden_version}, {results.created_at}.",
    ]
    if results.hardware is not None:
        hw = results.hardware
        parts.append(f"Hardware profile **{hw.name}** at ${hw.hourly_usd}/h ({hw.price_source}).")
    basis = next((r.cost.basis for r in results.runs if r.cost is not None), None)
    if basis is not None:
        parts.append(f"Cost basis: {basis}.")
    parts += ["", table(HEADER, [run_row(r) for r in results.runs]), ""]
    if results.search is not None:
        s = results.search
        found = f"**{s.best_rate:g} req/s**" if s.best_rate is not None else "**none** (even the lowest rate missed it)"
        cost = f", {format_usd(s.cost.per_1k_requests)} per 1k requests" if s.cost is not None else ""
        parts += [f"Highest arrival rate meeting `{s.slo}`: {found}{cost} ({s.steps} steps).", ""]
    m = results.machine
    load = m.get("loadavg_1m_at_start")
    parts.append(f"Machine: {m.get('cpu_model')}, {m.get('cpu_count')} CPUs, load average {load} at the start.")
    return "\n".join(parts) + "\n"
