#!/usr/bin/env python
"""Gateway-level figures on an existing ledger (issue 14), e.g. the 10M records of
`bench/scale.py --fill copy`:

    .venv/bin/python bench/scale_gateway.py --ledger postgresql://127.0.0.1:5432/costwarden_scale10m

1. **start**: `costwarden serve` with three rolling-30d budgets (global, one team, one key;
   `--team-budgets N`: N teams' instead of one), from the process's launch to the first `/readyz`
   200 (polled every 20 ms), against the same start on
   an empty ledger of the same backend (`--empty`: the interpreter, imports and migrations alone);
   and the runtime's own start in this process (`Runtime.start`, imports done), on both ledgers;
2. **`/admin/v1/spend`** over HTTP on that gateway for each window and grouping: the first
   request and the median of `--repeat` after it;
3. **`costwarden report --since W --by G --format json`** as a user runs it (a new process each
   time, so its interpreter start and imports are in the figure; `costwarden --help` alone is
   timed too): the median of `--repeat`.

Load average is recorded with each phase. Results go to `--out` (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from dashboard import TOKEN, serve

WINDOWS = ("1h", "24h", "7d", "30d")
GROUPS = ("team", "deployment", "team,deployment")
BUDGETS = [
    {"id": "global-30d", "window": "rolling", "rolling_seconds": 30 * 86_400, "limit_usd": "1000000"},
    {"id": "team-30d", "scope": {"team": "team-000"}, "window": "rolling", "rolling_seconds": 30 * 86_400},
    {"id": "key-30d", "scope": {"key_id": "key-000-0"}, "window": "rolling", "rolling_seconds": 30 * 86_400},
]


def config(ledger: str, folder: Path, name: str, teams: int = 1, keys: int = 1, state: str = "") -> Path:
    """`teams`: rolling-30d team budgets (team-000 and the next ones; each rebuild reads its team);
    `keys`: rolling-30d key budgets (key-000-0, key-001-0...: one key of each team, then key-000-1...);
    `state`: the shared counter store's URL (redis://...; in-process counters without)."""
    rolling = {"window": "rolling", "rolling_seconds": 30 * 86_400}
    more = [{"id": f"team-{t:03d}-30d", "scope": {"team": f"team-{t:03d}"}, **rolling} for t in range(1, teams)]
    more += [
        {"id": f"key-{k % 500:03d}-{k // 500}-30d", "scope": {"key_id": f"key-{k % 500:03d}-{k // 500}"}, **rolling}
        for k in range(1, keys)
    ]
    budgets = [{"limit_usd": "100000", "action": "alert_only", **b} for b in [*BUDGETS, *more]]
    data = {
        "server": {"host": "127.0.0.1", "admin_token": TOKEN},
        "storage": {"ledger": ledger, "spool_dir": str(folder / f"spool-{name}")},
        "environments": ["prod", "staging"],
        "teams": [{"name": f"team-{t:03d}", "projects": [f"proj-{t:03d}-{t % 3}"]} for t in range(500)],
        "deployments": [{"name": "dep-00", "protocol": "openai", "upstream": "http://127.0.0.1:9"}],
        "governance": {"spikes": {"enabled": False}, "budgets": budgets},
    }
    if state:
        data["state"] = state
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def load() -> float:
    return os.getloadavg()[0]


def starts(config_path: Path, args: argparse.Namespace, folder: Path) -> list[float]:
    out = []
    for _ in range(args.repeat):
        begin = time.perf_counter()
        proc = serve(config_path, args.port, folder, poll=0.02)
        out.append(time.perf_counter() - begin)
        proc.terminate()
        proc.wait(30)
    return out


def in_process(config_path: Path, args: argparse.Namespace) -> list[float]:
    """The runtime's own start (store open, migrations check, key load, the budgets' rebuild from
    the ledger...) in this process, imports done: what the ledger adds to a start."""
    import asyncio

    from costwarden.app.runtime import Runtime
    from costwarden.config.loader import load_config

    async def once() -> float:
        runtime = Runtime(load_config(config_path))
        begin = time.perf_counter()
        await runtime.start()
        took = time.perf_counter() - begin
        await runtime.stop()
        return took

    return [asyncio.run(once()) for _ in range(args.repeat)]


def admin_spend(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    with httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=600) as client:
        for window in WINDOWS:
            for group in GROUPS:
                times, body = [], {}
                for _ in range(args.repeat + 1):
                    begin = time.perf_counter()
                    reply = client.get(
                        "/admin/v1/spend",
                        params={"since": window, "group_by": group},
                        headers={"authorization": f"Bearer {TOKEN}"},
                    )
                    times.append(time.perf_counter() - begin)
                    assert reply.status_code == 200, (reply.status_code, reply.text[:300])
                    body = reply.json()
                rows.append(
                    {
                        "window": window,
                        "group_by": group,
                        "first_s": times[0],
                        "median_s": statistics.median(times[1:]),
                        "runs_s": times,
                        "rows": len(body["rows"]),
                        "requests": body["total"]["requests"],
                        "load": load(),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    return rows


def cli(config_path: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    binary = str(Path(sys.executable).parent / "costwarden")
    rows = []
    runs: list[tuple[str, str, list[str]]] = [("-", "--help", [binary, "--help"])]
    for window in args.cli_windows.split(","):
        runs += [
            (window, group, [binary, "report", "--config", str(config_path), "--since", window, "--by", group,
                             "--format", "json"])
            for group in GROUPS
        ]  # fmt: skip
    for window, group, argv in runs:
        times = []
        for _ in range(args.repeat):
            begin = time.perf_counter()
            done = subprocess.run(argv, capture_output=True, check=True)
            times.append(time.perf_counter() - begin)
        requests = json.loads(done.stdout)["total"]["requests"] if window != "-" else 0
        rows.append(
            {"window": window, "by": group, "median_s": statistics.median(times), "runs_s": times,
             "requests": requests, "load": load()}
        )  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--empty", default="", help="an empty ledger of the same backend (start baseline)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--port", type=int, default=18793)
    parser.add_argument("--dir", default="/tmp/costwarden-scale-gateway")
    parser.add_argument("--cli-windows", default=",".join(WINDOWS), help="the report CLI's windows (a process each)")
    parser.add_argument("--phases", default="start,admin,cli", help="comma-separated: start, admin, cli")
    parser.add_argument("--team-budgets", type=int, default=1, help="rolling-30d team budgets (team-000, team-001...)")
    parser.add_argument("--key-budgets", type=int, default=1, help="rolling-30d key budgets (key-000-0, key-001-0...)")
    parser.add_argument("--state", default="", help="counters in Redis (redis://...), else in process")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "scale_gateway.json"))
    args = parser.parse_args()
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    phases = set(args.phases.split(","))
    config_path = config(args.ledger, folder, "ledger", args.team_budgets, args.key_budgets, args.state)
    result: dict[str, Any] = {"args": vars(args)}
    if "start" in phases:
        empty_path = (
            config(args.empty, folder, "empty", args.team_budgets, args.key_budgets, args.state) if args.empty else None
        )
        if empty_path is not None:
            result["start_empty_s"] = starts(empty_path, args, folder)
        result["start_s"] = starts(config_path, args, folder)
        result["runtime_start_s"] = in_process(config_path, args)
        if empty_path is not None:
            result["runtime_start_empty_s"] = in_process(empty_path, args)
        result["start_load"] = load()
        print({k: v for k, v in result.items() if "start" in k}, flush=True)
    if "admin" in phases:
        proc = serve(config_path, args.port, folder)
        try:
            result["admin_spend"] = admin_spend(args)
        finally:
            proc.terminate()
            proc.wait(30)
    if "cli" in phases:
        result["cli_report"] = cli(config_path, args)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
