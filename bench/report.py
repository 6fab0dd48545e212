#!/usr/bin/env python
"""Markdown tables from bench/results/latest.json and bench/results/choices.json.

/work/main/.venv/bin/python bench/report.py        # paste into docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import harness as h

NAMES = ("direct", "costwarden", "costwarden-gov", "costwarden-gov-redis", "pyproxy", "litellm", "nginx")


def _f(v: Any, digits: int = 2) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    align = ["---" if i == 0 else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def latest(doc: dict[str, Any]) -> str:
    meta, summary = doc["meta"], doc["summary"]
    rates = meta["params"]["rates"]
    out = [f"Command: `{meta['command']}` ({meta['started']} to {meta['finished']})", ""]
    rows = []
    for name in NAMES:
        s = summary["targets"].get(name)
        if not s:
            continue
        for rate in rates:
            lat = s.get(f"latency@{rate}", {})
            if "skipped" in lat:
                rows.append([name, str(rate), "not run: " + lat["skipped"], "", "", ""])
                continue
            rows.append(
                [
                    name,
                    str(rate),
                    _f(lat.get("p50_ms")),
                    _f(lat.get("p99_ms")),
                    _f(lat.get("added_p50_ms")),
                    _f(lat.get("added_p99_ms")),
                ]
            )
    out.append(_table(["target", "rate (req/s)", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms"], rows))
    out.append("")
    rows = []
    for name in NAMES:
        s = summary["targets"].get(name)
        if not s:
            continue
        r = summary["ratios"][name]
        cpu = s.get("server_cpu_us_per_request")
        rows.append(
            [
                name,
                _f(s.get("throughput_rps"), 0),
                _f(cpu, 0),
                _f(1e6 / cpu, 0) if cpu else "–",
                _f(r.get("throughput_vs_litellm"), 1),
                _f(r.get("cpu_per_request_litellm_over_this"), 1),
                _f(s.get("saturated_p99_ms"), 1),
                _f(s.get("rss_mib"), 1),
            ]
        )
    out.append(
        _table(
            [
                "target",
                "max req/s (wrk)",
                "server CPU µs/req",
                "req/s per busy core",
                "req/s × LiteLLM",
                "CPU/req: LiteLLM ÷ this",
                "p99 ms at max",
                "RSS MiB",
            ],
            rows,
        )
    )
    cw = summary["targets"].get("costwarden", {})
    rows = []
    for rate in rates:
        t = cw.get(f"latency@{rate}", {}).get("gateway_timings")
        if t:
            rows.append(
                [
                    str(rate),
                    _f(t["latency_p50_ms"], 3),
                    _f(t["latency_p99_ms"], 3),
                    _f(t["upstream_p50_ms"], 3),
                    _f(t["upstream_p99_ms"], 3),
                    _f(t["own_p50_ms"], 3),
                    _f(t["own_p99_ms"], 3),
                ]
            )
    if rows:
        out += [
            "",
            "costwarden's own timings of the same requests, from their ledger records (ms):",
            "",
            _table(
                ["rate (req/s)", "latency p50", "latency p99", "upstream p50", "upstream p99", "own p50", "own p99"],
                rows,
            ),
        ]
    noise = meta.get("noise", [])
    if noise:
        shares = ", ".join(f"{n['other_processes_cpu_share']:.0%}" for n in noise)
        out += ["", f"CPU taken by other processes on the machine during each repetition: {shares}."]
    return "\n".join(out)


def choices(doc: dict[str, Any]) -> str:
    summary = doc["summary"]
    out = [f"Command: `{doc['meta']['command']}`", ""]
    rows = [
        [r["app"], r["server"], _f(r["rps"], 0), _f(r["cpu_us_per_request"], 1), _f(r["p99_ms"]), _f(r["rss_mib"], 1)]
        for r in summary["servers"]
    ]
    if rows:
        out.append(_table(["app", "server", "req/s", "CPU µs/req", "p99 ms (32 conns)", "RSS MiB"], rows))
        out.append("")
    rows = [
        [
            "sequential" if r["mode"] == "seq" else "32 concurrent",
            r["lib"],
            _f(r["rps"], 0),
            _f(r["wall_us_per_request"], 1),
            _f(r["cpu_us_per_request"], 1),
        ]
        for r in summary["clients"]
    ]
    if rows:
        out.append(_table(["mode", "client", "req/s", "wall µs/req", "CPU µs/req"], rows))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latest", type=Path, default=h.BENCH / "results" / "latest.json")
    parser.add_argument("--choices", type=Path, default=h.BENCH / "results" / "choices.json")
    args = parser.parse_args(argv)
    if args.latest.exists():
        print(latest(json.loads(args.latest.read_text())))
        print()
    if args.choices.exists():
        print(choices(json.loads(args.choices.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
