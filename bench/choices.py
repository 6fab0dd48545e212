#!/usr/bin/env python
"""Microbenchmarks behind two design choices of the gateway.

    /work/main/.venv/bin/python bench/choices.py --quick    # ~2 minutes
    /work/main/.venv/bin/python bench/choices.py --full --nice -10    # ~6 minutes, three repetitions

servers: the same ASGI apps, one worker each, pinned to the server core, under
  uvicorn (uvloop + httptools) and granian (ASGI interface, uvloop, one runtime thread);
  closed-loop load with wrk (32 connections); req/s and the server's CPU µs per request.
  Two apps: `hello` (reads the body, answers a small JSON) and costwarden's gateway itself
  (forwarding to the fixed nginx upstream, metering, ledger on SQLite).
clients: aiohttp.ClientSession vs httpx.AsyncClient, one process on the server core, POSTing
  the chat body to the fixed nginx upstream, sequentially and 32 at a time; req/s and CPU µs
  per request of the client process.

Writes bench/results/choices.json and prints the medians. Run `bench/setup` first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import harness as h
from rich.console import Console
from rich.table import Table

console = Console(width=120)
UPSTREAM_PORT = 19210
SERVER_PORT = 19300
SERVERS = ("uvicorn", "granian")
APPS = ("hello", "costwarden")
LIBS = ("aiohttp", "httpx")
COSTWARDEN_KEY = "cw_bench_0123456789abcdef0123"


# --- servers -----------------------------------------------------------------------------------


def server_argv(server: str, app: str) -> list[str | Path]:
    target = "asgi_apps:hello" if app == "hello" else "asgi_apps:costwarden_app"
    factory = [] if app == "hello" else ["--factory"]
    common = ["--host", h.HOST, "--port", str(SERVER_PORT), "--log-level", "warning"]
    if server == "uvicorn":
        return [
            h.TOOLS / "python", "-m", "uvicorn", target, *factory, *common,
            "--loop", "uvloop", "--http", "httptools", "--lifespan", "on",
            "--no-access-log", "--no-server-header", "--no-date-header", "--app-dir", h.BENCH,
        ]  # fmt: skip
    return [
        h.TOOLS / "granian", target, *factory, *common,
        "--interface", "asgi", "--workers", "1", "--runtime-threads", "1", "--loop", "uvloop",
        "--http", "1", "--no-ws", "--no-access-log", "--working-dir", h.BENCH,
    ]  # fmt: skip


def costwarden_config(workdir: Path) -> Path:
    cfg = workdir / "costwarden.yaml"
    cfg.write_text(
        f"""server: {{host: {h.HOST}, port: {SERVER_PORT}}}
storage: {{ledger: "sqlite:///{workdir}/ledger.db", spool_dir: {workdir}/spool}}
environments: [prod]
teams: [{{name: bench, projects: [load]}}]
deployments:
  - name: bench-model
    protocol: openai
    upstream: http://{h.HOST}:{UPSTREAM_PORT}
    pricing: {{input_per_1m: "0.50", output_per_1m: "1.50"}}
keys:
  - {{id: bench, key: "{COSTWARDEN_KEY}", team: bench, project: load, environment: prod}}
"""
    )
    return cfg


def tree_cpu_seconds(pid: int) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in h.process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / tick


def bench_server(
    server: str, app: str, rep: int, procs: h.Procs, workdir: Path, seconds: float, connections: int
) -> dict[str, Any]:
    run_dir = workdir / f"{server}-{app}-{rep}"
    run_dir.mkdir()
    env: dict[str, str | None] = {"BENCH_COSTWARDEN_CONFIG": str(costwarden_config(run_dir))}
    url = f"http://{h.HOST}:{SERVER_PORT}{h.CHAT_PATH}"
    auth = COSTWARDEN_KEY if app == "costwarden" else None
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = f"Bearer {auth}"
    proc = procs.start(f"{server}-{app}", server_argv(server, app), h.SERVER_CPU, env=env)
    try:
        _, hdrs, _ = h.wait_ready(proc, url, h.CHAT_BODY, headers, timeout=60)
        if app == "costwarden" and "x-costwarden-cost-usd" not in hdrs:
            raise h.BenchError(f"{server} served costwarden without its cost header: {hdrs}")
        h.wrk(url, connections=8, seconds=2, auth=auth)  # warm-up
        cpu0 = tree_cpu_seconds(proc.pid)
        result = h.wrk(url, connections=connections, seconds=seconds, auth=auth)
        cpu1 = tree_cpu_seconds(proc.pid)
        if result.non_2xx or result.socket_errors:
            raise h.BenchError(f"{server}/{app}: {result.non_2xx} non-2xx, {result.socket_errors} socket errors")
        memory = h.tree_memory_mib(proc.pid)
    finally:
        procs.stop(proc, grace=20)
    return {
        "server": server,
        "app": app,
        "rep": rep,
        "rps": result.rps,
        "cpu_us_per_request": round((cpu1 - cpu0) / max(result.requests, 1) * 1e6, 1),
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "rss_mib": memory["rss_mib"],
        "processes": memory["processes"],
    }


# --- clients -----------------------------------------------------------------------------------


async def _client_aiohttp(url: str, mode: str, count: int, deadline: float) -> int:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    headers = {"Content-Type": "application/json"}
    done = 0
    async with aiohttp.ClientSession(
        connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
    ) as session:

        async def worker(n: int) -> None:
            nonlocal done
            for _ in range(n):
                if time.monotonic() > deadline:
                    return
                async with session.post(url, data=h.CHAT_BODY, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise h.BenchError(f"aiohttp got {response.status}")
                done += 1

        await _drive(worker, mode, count)
    return done


async def _client_httpx(url: str, mode: str, count: int, deadline: float) -> int:
    import httpx

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64, keepalive_expiry=60)
    headers = {"Content-Type": "application/json"}
    done = 0
    async with httpx.AsyncClient(limits=limits, timeout=10.0) as client:

        async def worker(n: int) -> None:
            nonlocal done
            for _ in range(n):
                if time.monotonic() > deadline:
                    return
                response = await client.post(url, content=h.CHAT_BODY, headers=headers)
                if response.status_code != 200:
                    raise h.BenchError(f"httpx got {response.status_code}")
                done += 1

        await _drive(worker, mode, count)
    return done


async def _drive(worker: Any, mode: str, count: int) -> None:
    await worker(20)  # open the connection(s) first: not part of the measurement's steady state
    if mode == "seq":
        await worker(count)
    else:
        per = count // 32
        await asyncio.gather(*(worker(per) for _ in range(32)))


def client_worker(lib: str, mode: str, count: int, url: str, limit_s: float) -> dict[str, Any]:
    """Runs in its own process (see `bench_client`): one library, one mode, under uvloop."""
    import uvloop

    fn = _client_aiohttp if lib == "aiohttp" else _client_httpx
    deadline = time.monotonic() + limit_s
    cpu0, t0 = time.process_time(), time.perf_counter()
    done = uvloop.run(fn(url, mode, count, deadline))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    done += 20  # the connection-opening requests, included in the timing above
    return {"requests": done, "wall_s": wall, "cpu_s": cpu}


def bench_client(lib: str, mode: str, rep: int, count: int) -> dict[str, Any]:
    url = f"http://{h.HOST}:{UPSTREAM_PORT}{h.CHAT_PATH}"
    cmd = [
        "taskset", "-c", h.SERVER_CPU, str(h.MAIN_PY), str(Path(__file__).resolve()),
        "client-worker", "--lib", lib, "--mode", mode, "--count", str(count), "--url", url,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise h.BenchError(f"client worker {lib}/{mode} failed: {done.stderr[-2000:]}")
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "lib": lib,
        "mode": mode,
        "rep": rep,
        "requests": raw["requests"],
        "rps": round(raw["requests"] / raw["wall_s"], 1),
        "wall_us_per_request": round(raw["wall_s"] / raw["requests"] * 1e6, 1),
        "cpu_us_per_request": round(raw["cpu_s"] / raw["requests"] * 1e6, 1),
    }


# --- main ----------------------------------------------------------------------------------------


def _median_by(rows: list[dict[str, Any]], keys: tuple[str, ...], fields: tuple[str, ...]) -> list[dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    out = []
    for group_key, group in groups.items():
        entry: dict[str, Any] = dict(zip(keys, group_key, strict=True))
        entry["reps"] = len(group)
        for f in fields:
            values = [r[f] for r in group if r.get(f) is not None]
            entry[f] = round(h.median(values), 2) if values else None
        out.append(entry)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    worker = sub.add_parser("client-worker", help="internal: one client measurement")
    worker.add_argument("--lib", choices=LIBS, required=True)
    worker.add_argument("--mode", choices=("seq", "conc"), required=True)
    worker.add_argument("--count", type=int, required=True)
    worker.add_argument("--url", required=True)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true")
    mode.add_argument("--full", action="store_true")
    parser.add_argument("--only", choices=("servers", "clients"), help="run one half")
    parser.add_argument("--nice", type=int, default=0, help="nice increment for the whole run, e.g. -5")
    parser.add_argument("--out", type=Path, default=h.BENCH / "results" / "choices.json")
    args = parser.parse_args(argv)

    if args.command == "client-worker":
        if not args.url.startswith(f"http://{h.HOST}:"):
            parser.error("loopback only")
        print(json.dumps(client_worker(args.lib, args.mode, args.count, args.url, limit_s=60.0)))
        return 0

    reps, seconds, seq_n, conc_n = (3, 10.0, 3000, 10000) if args.full else (1, 5.0, 1500, 4000)
    for port in (UPSTREAM_PORT, SERVER_PORT):
        h.check_port_free(port)
    if not (h.TOOLS / "granian").exists():
        console.print("[red]bench/.venv-tools is missing: run bench/setup[/]")
        return 2
    h.pin_self(h.LOAD_CPU)
    if args.nice:
        os.nice(args.nice)
    command = "/work/main/.venv/bin/python bench/choices.py " + " ".join(argv if argv is not None else sys.argv[1:])
    servers: list[dict[str, Any]] = []
    clients: list[dict[str, Any]] = []
    with h.workspace("cwchoices-") as (workdir, procs):
        upstream = h.start_nginx(procs, "upstream", h.upstream_block(UPSTREAM_PORT), h.LOAD_CPU)
        h.wait_ready(upstream, f"http://{h.HOST}:{UPSTREAM_PORT}{h.CHAT_PATH}", h.CHAT_BODY, {}, timeout=15)
        for rep in range(1, reps + 1):
            if args.only != "clients":
                for app in APPS:
                    for server in SERVERS:
                        row = bench_server(server, app, rep, procs, workdir, seconds, 32)
                        servers.append(row)
                        console.print(
                            f"  rep {rep} {server:<8} {app:<10} {row['rps']:>9.0f} req/s"
                            f"  {row['cpu_us_per_request']:>6.1f} µs CPU/req  RSS {row['rss_mib']} MiB"
                        )
            if args.only != "servers":
                for mode_name, n in (("seq", seq_n), ("conc", conc_n)):
                    for lib in LIBS:
                        row = bench_client(lib, mode_name, rep, n)
                        clients.append(row)
                        console.print(
                            f"  rep {rep} {lib:<8} {mode_name:<5} {row['rps']:>9.0f} req/s"
                            f"  {row['cpu_us_per_request']:>6.1f} µs CPU/req"
                        )
    summary = {
        "servers": _median_by(servers, ("app", "server"), ("rps", "cpu_us_per_request", "p50_ms", "p99_ms", "rss_mib")),
        "clients": _median_by(clients, ("mode", "lib"), ("rps", "wall_us_per_request", "cpu_us_per_request")),
    }
    document = {
        "meta": {
            "command": command.strip(),
            "started_reps": reps,
            "machine": h.machine(),
            "versions": h.versions(),
            "layout": {"load_and_upstream_cpu": h.LOAD_CPU, "server_or_client_cpu": h.SERVER_CPU},
        },
        "summary": summary,
        "servers": servers,
        "clients": clients,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    _print(summary)
    console.print(f"wrote {args.out}")
    return 0


def _print(summary: dict[str, Any]) -> None:
    if summary["servers"]:
        table = Table(title="ASGI server, one worker (wrk, 32 connections; medians)")
        for col in ("app", "server", "req/s", "CPU µs/req", "p99 ms", "RSS MiB"):
            table.add_column(col, justify="left" if col in ("app", "server") else "right")
        for r in summary["servers"]:
            table.add_row(
                r["app"], r["server"], f"{r['rps']:.0f}", f"{r['cpu_us_per_request']:.1f}", f"{r['p99_ms']:.2f}",
                f"{r['rss_mib']:.1f}",
            )  # fmt: skip
        console.print(table)
    if summary["clients"]:
        table = Table(title="upstream client, one process under uvloop (medians)")
        for col in ("mode", "client", "req/s", "wall µs/req", "CPU µs/req"):
            table.add_column(col, justify="left" if col in ("mode", "client") else "right")
        for r in summary["clients"]:
            mode = "sequential" if r["mode"] == "seq" else "32 concurrent"
            table.add_row(
                mode, r["lib"], f"{r['rps']:.0f}", f"{r['wall_us_per_request']:.1f}", f"{r['cpu_us_per_request']:.1f}"
            )
        console.print(table)


if __name__ == "__main__":
    sys.exit(main())
