#!/usr/bin/env python
"""costwarden vs LiteLLM vs nginx vs direct, on loopback, against one fixed upstream.

    /work/main/.venv/bin/python bench/run.py --quick     # ~3 minutes, one repetition
    /work/main/.venv/bin/python bench/run.py --full --nice -10 --profile 10   # ~18 minutes, 3 reps

For each repetition and each target (direct, costwarden, pyproxy, litellm, nginx), in that order:
start the target pinned to the server core, check one answer, warm up (closed loop with wrk,
which also probes its capacity), measure latency open-loop at each fixed rate the target can
sustain (rate <= 60% of the probed capacity), measure max throughput closed-loop with wrk,
read the RSS of its process tree, stop it. The results of every repetition and their medians
go to bench/results/latest.json; the medians are printed as a table.

Run `bench/setup` once first (nginx, wrk, the LiteLLM and tools venvs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import shlex
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import harness as h
import uvloop
from rich.console import Console
from rich.table import Table

console = Console(width=max(120, shutil.get_terminal_size((120, 40)).columns))

UPSTREAM_PORT = 19200
NGINX_PORT = 19201
COSTWARDEN_PORT = 18700
LITELLM_PORT = 18800
COSTWARDEN_KEY = "cw_bench_0123456789abcdef0123"
LITELLM_KEY = "sk-litellm-bench-0123456789"
PYPROXY_PORT = 18900
# pyproxy: the smallest uvicorn + aiohttp pass-through (bench/asgi_apps.py), no metering: the floor
# of a Python gateway on costwarden's stack, to tell the stack's cost from the chain's.
# costwarden-gov / costwarden-gov-redis: the same gateway with a budget, rate limits (requests and
# tokens per minute) and a concurrency quota on every request, state in-process or in Redis; limits
# are set so that nothing is refused, so the difference to costwarden is the cost of admission.
RAWPROXY_PORT = 18901
GRANIAN_PORT = 18902
TARGET_NAMES = (
    "direct", "costwarden", "costwarden-fast", "costwarden-fast-1w", "costwarden-fast-2w", "costwarden-gov",
    "costwarden-gov-redis", "pyproxy", "granian-rsgi", "rawproxy", "litellm", "nginx",
)  # fmt: skip
GOVERNANCE = """governance:
  spikes: {enabled: false}
  budgets:
    - {id: bench-month, scope: {team: bench}, window: month, limit_usd: "1000000"}
  rate_limits:
    - {per: key, requests_per_minute: 100000000, tokens_per_minute: 100000000000}
  concurrency:
    - {per: deployment, max_concurrent: 100000}
"""
MAX_UTILISATION = 0.6  # an open-loop rate is measured only up to this share of the probed capacity
TARGETS_P50_MS = 0.5
TARGETS_P99_MS = 3.0
TARGET_RATIO = 20.0


@dataclass
class Params:
    reps: int
    rates: list[int]
    latency_seconds: float
    min_samples: int
    warmup_seconds: float
    throughput_seconds: float
    connections: int
    targets: list[str]
    profile_seconds: float
    nice: int


QUICK = {"reps": 1, "latency_seconds": 5.0, "min_samples": 150, "warmup_seconds": 2.0, "throughput_seconds": 5.0}
FULL = {"reps": 3, "latency_seconds": 20.0, "min_samples": 600, "warmup_seconds": 5.0, "throughput_seconds": 15.0}


# --- the targets -----------------------------------------------------------------------------


@dataclass
class Running:
    name: str
    url: str
    auth: str | None
    proc: h.Proc | None  # None: direct (the upstream itself, not a proxy)
    ledger: Path | None = None
    spool: Path | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        hdrs = {"Content-Type": "application/json"}
        if self.auth:
            hdrs["Authorization"] = f"Bearer {self.auth}"
        return hdrs


def costwarden_config(
    workdir: Path, governance: str | None = None, fast: bool = False, workers: int = 1, state: bool = False
) -> tuple[Path, Path, Path]:
    """The gateway's config; `governance` None (metering only), "memory" or "redis"; `fast`: engine fast;
    `workers` > 1 serves with that many worker processes (which needs the Redis state store); `state`:
    the Redis state store without governance (what the workers need, for a 1-worker baseline)."""
    engine = f", engine: fast, admin_port: {COSTWARDEN_PORT + 1}" if fast else ""
    engine += f", workers: {workers}" if workers > 1 else ""
    ledger = workdir / "ledger.db"
    spool = workdir / "spool"
    cfg = workdir / "costwarden.yaml"
    cfg.write_text(
        f"""server: {{host: {h.HOST}, port: {COSTWARDEN_PORT}{engine}}}
storage: {{ledger: "sqlite:///{ledger}", spool_dir: {spool}}}
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
        + (GOVERNANCE if governance else "")
        + (f"state: redis://{h.HOST}:6379/0\n" if governance == "redis" or workers > 1 or state else "")
    )
    return cfg, ledger, spool


def litellm_config(workdir: Path) -> Path:
    cfg = workdir / "litellm.yaml"
    cfg.write_text(
        f"""model_list:
  - model_name: bench-model
    litellm_params:
      model: openai/bench-model
      api_base: http://{h.HOST}:{UPSTREAM_PORT}/v1
      api_key: sk-bench
general_settings:
  master_key: {LITELLM_KEY}
litellm_settings:
  telemetry: false
"""
    )
    return cfg


def litellm_env() -> dict[str, str | None]:
    return {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no download of the cost map at start
        "DATABASE_URL": None,  # no database
        "NO_DOCKER": "True",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


def start_target(name: str, procs: h.Procs, rep_dir: Path) -> Running:
    cpu = h.SERVER_CPU
    if name == "direct":
        return Running(name, f"http://{h.HOST}:{UPSTREAM_PORT}{h.CHAT_PATH}", None, None)
    if name.startswith("costwarden"):
        governance = {"costwarden-gov": "memory", "costwarden-gov-redis": "redis"}.get(name)
        # costwarden-fast-2w: two workers; costwarden-fast-1w: its baseline, one worker with the same
        # Redis state store. Both on every core (the others are pinned to one).
        workers = 2 if name == "costwarden-fast-2w" else 1
        fast = name in ("costwarden-fast", "costwarden-fast-1w", "costwarden-fast-2w")
        state = name in ("costwarden-fast-1w", "costwarden-fast-2w")
        cfg, ledger, spool = costwarden_config(rep_dir, governance, fast=fast, workers=workers, state=state)
        all_cpus = ",".join(str(c) for c in range(os.cpu_count() or 1))
        proc = procs.start(name, [h.COSTWARDEN, "serve", "--config", cfg], all_cpus if state else cpu)
        run = Running(name, f"http://{h.HOST}:{COSTWARDEN_PORT}{h.CHAT_PATH}", COSTWARDEN_KEY, proc, ledger, spool)
        _, headers, _ = h.wait_ready(proc, run.url, h.CHAT_BODY, run.headers, timeout=60)
        if "x-costwarden-cost-usd" not in headers:
            raise h.BenchError(f"costwarden answered 200 without x-costwarden-cost-usd: {headers}")
        run.notes["cost_usd_per_request"] = headers["x-costwarden-cost-usd"]
        return run
    if name == "litellm":
        cfg = litellm_config(rep_dir)
        argv: list[str | Path] = [
            h.LITELLM,
            "--config",
            cfg,
            "--host",
            h.HOST,
            "--port",
            str(LITELLM_PORT),
            "--num_workers",
            "1",
        ]
        proc = procs.start("litellm", argv, cpu, env=litellm_env())
        run = Running(name, f"http://{h.HOST}:{LITELLM_PORT}{h.CHAT_PATH}", LITELLM_KEY, proc)
        _, _, body = h.wait_ready(proc, run.url, h.CHAT_BODY, run.headers, timeout=180)
        if b'"usage"' not in body:
            raise h.BenchError(f"litellm answered without usage: {body[:300]!r}")
        return run
    if name == "pyproxy":
        argv = [
            h.TOOLS / "python", "-m", "uvicorn", "asgi_apps:passthrough_app", "--factory",
            "--host", h.HOST, "--port", str(PYPROXY_PORT), "--log-level", "warning",
            "--loop", "uvloop", "--http", "httptools", "--lifespan", "on",
            "--no-access-log", "--no-server-header", "--no-date-header", "--app-dir", h.BENCH,
        ]  # fmt: skip
        env: dict[str, str | None] = {"BENCH_UPSTREAM": f"http://{h.HOST}:{UPSTREAM_PORT}"}
        proc = procs.start("pyproxy", argv, cpu, env=env)
        run = Running(name, f"http://{h.HOST}:{PYPROXY_PORT}{h.CHAT_PATH}", None, proc)
        h.wait_ready(proc, run.url, h.CHAT_BODY, run.headers, timeout=30)
        return run
    if name == "granian-rsgi":
        argv = [
            h.TOOLS / "granian", "asgi_apps:rsgi_passthrough", "--host", h.HOST, "--port", str(GRANIAN_PORT),
            "--log-level", "warning", "--interface", "rsgi", "--workers", "1", "--runtime-threads", "1",
            "--loop", "uvloop", "--http", "1", "--no-ws", "--no-access-log", "--working-dir", h.BENCH,
        ]  # fmt: skip
        env = {"BENCH_UPSTREAM": f"http://{h.HOST}:{UPSTREAM_PORT}"}
        proc = procs.start(name, argv, cpu, env=env)
        run = Running(name, f"http://{h.HOST}:{GRANIAN_PORT}{h.CHAT_PATH}", None, proc)
        h.wait_ready(proc, run.url, h.CHAT_BODY, run.headers, timeout=30)
        return run
    if name == "rawproxy":
        argv = [h.MAIN_PY, h.BENCH / "rawproxy.py", str(RAWPROXY_PORT), h.HOST, str(UPSTREAM_PORT)]
        proc = procs.start("rawproxy", argv, cpu)
        run = Running(name, f"http://{h.HOST}:{RAWPROXY_PORT}{h.CHAT_PATH}", None, proc)
        h.wait_ready(proc, run.url, h.CHAT_BODY, run.headers, timeout=30)
        return run
    if name == "nginx":
        proc = h.start_nginx(procs, "nginx-proxy", h.reverse_proxy_block(NGINX_PORT, UPSTREAM_PORT), cpu)
        run = Running(name, f"http://{h.HOST}:{NGINX_PORT}{h.CHAT_PATH}", None, proc)
        h.wait_ready(proc, run.url, h.CHAT_BODY, run.headers, timeout=30)
        return run
    raise ValueError(name)


# --- open-loop latency -------------------------------------------------------------------------


async def _open_loop(
    url: str, headers: dict[str, str], rate: float, count: int, request_timeout: float
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    lags: list[float] = []
    connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=60)
    client_timeout = aiohttp.ClientTimeout(total=request_timeout)
    async with aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",)) as session:

        async def one() -> None:
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=h.CHAT_BODY, headers=headers, timeout=client_timeout) as response:
                    await response.read()
                    status = str(response.status)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                status = type(exc).__name__
            if status == "200":
                latencies.append(time.perf_counter() - t0)
            statuses[status] += 1

        tasks: list[asyncio.Task[None]] = []
        interval = 1.0 / rate
        start = time.perf_counter() + 0.02
        gc.collect()
        gc.disable()  # the generator's own GC pauses would land in the tail
        try:
            for i in range(count):
                at = start + i * interval
                delay = at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                lags.append(time.perf_counter() - at)
                tasks.append(asyncio.create_task(one()))
            _, pending = await asyncio.wait(tasks, timeout=request_timeout + 5)
            for task in pending:
                task.cancel()
        finally:
            gc.enable()
    latencies.sort()
    lags.sort()
    ok = statuses.get("200", 0)
    return {
        "rate": rate,
        "sent": count,
        "ok": ok,
        "statuses": dict(statuses),
        "p50_ms": h.quantile(latencies, 0.50) * 1e3,
        "p90_ms": h.quantile(latencies, 0.90) * 1e3,
        "p99_ms": h.quantile(latencies, 0.99) * 1e3,
        "max_ms": latencies[-1] * 1e3 if latencies else float("nan"),
        "send_lag_p99_ms": h.quantile(lags, 0.99) * 1e3,
    }


def open_loop(url: str, headers: dict[str, str], rate: float, seconds: float, min_samples: int) -> dict[str, Any]:
    count = max(int(rate * seconds), min_samples)
    return uvloop.run(_open_loop(url, headers, rate, count, request_timeout=10.0))


# --- CPU accounting --------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    total = 0
    for p in h.process_tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def system_busy_seconds() -> float:
    """CPU time all processes spent in user and system mode (irq, softirq and steal left out:
    loopback traffic's softirq time is not charged to any process)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (values[0] + values[1] + values[2]) / _TICK


def own_cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


# --- costwarden's ledger ----------------------------------------------------------------------


def ledger_rows(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        return int(db.execute("SELECT COUNT(*) FROM ledger").fetchone()[0])


def settled_rows(path: Path, seconds: float = 10.0) -> int:
    """The ledger's row count once it stops changing (the recorder flushes every 200 ms)."""
    deadline = time.monotonic() + seconds
    rows = ledger_rows(path)
    while time.monotonic() < deadline:
        time.sleep(0.6)
        again = ledger_rows(path)
        if again == rows:
            break
        rows = again
    return rows


def max_rowid(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        return int(db.execute("SELECT COALESCE(MAX(rowid), 0) FROM ledger").fetchone()[0])


def gateway_timings(path: Path, after_rowid: int) -> dict[str, float]:
    """The gateway's own view of the requests since `after_rowid`, from their ledger records:
    latency_ms (request read to response sent), upstream_ms (aiohttp request + response read),
    and their difference (the chain's own time)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        rows = db.execute(
            "SELECT latency_ms, upstream_ms FROM ledger WHERE rowid > ? AND upstream_ms IS NOT NULL", (after_rowid,)
        ).fetchall()
    total = sorted(r[0] for r in rows)
    upstream = sorted(r[1] for r in rows)
    own = sorted(r[0] - r[1] for r in rows)
    return {
        "n": len(rows),
        "latency_p50_ms": round(h.quantile(total, 0.5), 3),
        "latency_p99_ms": round(h.quantile(total, 0.99), 3),
        "upstream_p50_ms": round(h.quantile(upstream, 0.5), 3),
        "upstream_p99_ms": round(h.quantile(upstream, 0.99), 3),
        "own_p50_ms": round(h.quantile(own, 0.5), 3),
        "own_p99_ms": round(h.quantile(own, 0.99), 3),
    }


# --- profile -----------------------------------------------------------------------------------


def profile_costwarden(run: Running, seconds: float, connections: int) -> dict[str, Any]:
    """py-spy (sampling, native off) of the gateway under wrk load; top frames by self and total."""
    assert run.proc is not None
    py_spy = h.TOOLS / "py-spy"
    if not py_spy.exists():
        return {"error": "py-spy missing: run bench/setup"}
    raw = h.BENCH / "results" / "raw" / f"profile-{run.name}.txt"  # collapsed stacks (flamegraph.pl input)
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.unlink(missing_ok=True)
    result: dict[str, Any] = {}

    def load() -> None:
        result["wrk"] = h.wrk(run.url, connections=connections, seconds=seconds + 2, auth=run.auth).as_dict()

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(1.0)
    subprocess.run(
        [
            str(py_spy),
            "record",
            "-p",
            str(run.proc.pid),
            "-d",
            str(int(seconds)),
            "-r",
            "250",
            "-f",
            "raw",
            "-o",
            str(raw),
            "--nonblocking",
        ],
        capture_output=True,
        timeout=seconds + 60,
        check=False,
    )
    thread.join(seconds + 60)
    if not raw.exists():
        return {"error": "py-spy wrote nothing (needs ptrace)", **result}
    self_c: Counter[str] = Counter()
    total_c: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        samples += count
        frames = stack.split(";")
        self_c[frames[-1]] += count
        for frame in set(frames):
            total_c[frame] += count
    result["samples"] = samples
    result["self"] = [(f, round(c / samples * 100, 1)) for f, c in self_c.most_common(25)]
    result["total"] = [(f, round(c / samples * 100, 1)) for f, c in total_c.most_common(60)]
    return result


# --- one repetition -------------------------------------------------------------------------------


def latency_phases(run: Running, params: Params, capacity_rps: float) -> dict[str, Any]:
    """Open-loop latency at each fixed rate this target can sustain; for costwarden, also check
    that the ledger got exactly one row per request, and read the gateway's own timings."""
    out: dict[str, Any] = {}
    baseline = settled_rows(run.ledger) if run.ledger else 0
    for rate in params.rates:
        if rate > MAX_UTILISATION * capacity_rps:
            out[str(rate)] = {"skipped": f"over {MAX_UTILISATION:.0%} of its capacity ({capacity_rps:.0f} req/s)"}
            continue
        mark = max_rowid(run.ledger) if run.ledger else 0
        lat = open_loop(run.url, run.headers, rate, params.latency_seconds, params.min_samples)
        if run.ledger:
            settled_rows(run.ledger)
            lat["gateway_timings"] = gateway_timings(run.ledger, mark)
        out[str(rate)] = lat
        if lat["ok"] != lat["sent"]:
            raise h.BenchError(f"{run.name} at {rate} req/s: {lat['statuses']}")
    if run.ledger:
        expected = sum(v.get("sent", 0) for v in out.values())
        rows = settled_rows(run.ledger) - baseline
        out["ledger_check"] = {"sent": expected, "rows": rows, "ok": rows == expected}
    return out


def measure_target(
    name: str, rep: int, params: Params, procs: h.Procs, workdir: Path, upstream: h.Proc
) -> dict[str, Any]:
    rep_dir = workdir / f"rep{rep}-{name}"
    rep_dir.mkdir()
    out: dict[str, Any] = {"target": name, "rep": rep}
    t_start = time.monotonic()
    run = start_target(name, procs, rep_dir)
    out["start_seconds"] = round(time.monotonic() - t_start, 2)
    out.update(run.notes)
    sent = 1  # the readiness probe that returned 200 (earlier probes failed before the app)
    try:
        # Warm-up, closed loop: also tells which fixed rates this target can sustain.
        warm = h.wrk(run.url, connections=8, seconds=params.warmup_seconds, auth=run.auth)
        out["warmup"] = warm.as_dict()
        sent += warm.requests
        out["latency"] = latency_phases(run, params, warm.rps)
        if "ledger_check" in out["latency"]:
            out["ledger_check_latency"] = out["latency"].pop("ledger_check")
        sent += sum(v.get("ok", 0) for v in out["latency"].values())
        # Max throughput, closed loop, with the server's own CPU time per request.
        cpu0 = tree_cpu_seconds(run.proc.pid) if run.proc else tree_cpu_seconds(upstream.pid)
        thr = h.wrk(run.url, connections=params.connections, seconds=params.throughput_seconds, auth=run.auth)
        cpu1 = tree_cpu_seconds(run.proc.pid) if run.proc else tree_cpu_seconds(upstream.pid)
        if thr.non_2xx or thr.socket_errors:
            raise h.BenchError(f"{name} under wrk: {thr.non_2xx} non-2xx, {thr.socket_errors} socket errors")
        out["throughput"] = thr.as_dict()
        out["throughput"]["server_cpu_us_per_request"] = round((cpu1 - cpu0) / max(thr.requests, 1) * 1e6, 1)
        out["throughput"]["server_cpu_share"] = round((cpu1 - cpu0) / thr.seconds, 3)
        sent += thr.requests
        if run.proc:
            out["memory"] = h.tree_memory_mib(run.proc.pid)
        if name in ("costwarden", "costwarden-fast") and params.profile_seconds > 0:
            out["profile"] = profile_costwarden(run, params.profile_seconds, params.connections)
            sent += out["profile"].get("wrk", {}).get("requests", 0)
    finally:
        if run.proc:
            code = procs.stop(run.proc, grace=30)
            out["exit_code"] = code
    if run.ledger and run.spool:
        rows = ledger_rows(run.ledger)
        left = [p.name for p in run.spool.rglob("*") if p.is_file()]
        # wrk stops with up to `connections` requests in flight; the gateway still records them.
        slack = 8 + params.connections * (2 if params.profile_seconds > 0 else 1) + 8
        out["ledger_check_final"] = {
            "completed_by_clients": sent,
            "rows": rows,
            "spool_files_left": left,
            "ok": sent <= rows <= sent + slack and not left,
        }
    return out


# --- summary ---------------------------------------------------------------------------------------


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) else None


def summarise(reps: list[dict[str, Any]], params: Params) -> dict[str, Any]:
    by_target: dict[str, list[dict[str, Any]]] = {}
    for r in reps:
        by_target.setdefault(r["target"], []).append(r)

    def med(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return round(h.median(present), 3) if present else None

    summary: dict[str, Any] = {}
    for name, runs in by_target.items():
        s: dict[str, Any] = {"reps": len(runs)}
        for rate in params.rates:
            key = str(rate)
            lat = [r["latency"].get(key, {}) for r in runs]
            if all("skipped" in x for x in lat):
                s[f"latency@{rate}"] = {"skipped": lat[0]["skipped"]}
                continue
            entry: dict[str, Any] = {
                "p50_ms": med([_num(x.get("p50_ms")) for x in lat]),
                "p99_ms": med([_num(x.get("p99_ms")) for x in lat]),
            }
            if name != "direct":
                # Per repetition: target's quantile minus direct's same quantile at the same rate,
                # then the median over repetitions.
                added50: list[float | None] = []
                added99: list[float | None] = []
                for r, x in zip(runs, lat, strict=True):
                    base = next((d for d in by_target.get("direct", []) if d["rep"] == r["rep"]), None)
                    b = base["latency"].get(key, {}) if base else {}
                    if "p50_ms" in x and "p50_ms" in b:
                        added50.append(x["p50_ms"] - b["p50_ms"])
                        added99.append(x["p99_ms"] - b["p99_ms"])
                entry["added_p50_ms"] = med(added50)
                entry["added_p99_ms"] = med(added99)
            timings = [x["gateway_timings"] for x in lat if "gateway_timings" in x]
            if timings:
                entry["gateway_timings"] = {k: med([t[k] for t in timings]) for k in timings[0] if k != "n"}
            s[f"latency@{rate}"] = entry
        s["throughput_rps"] = med([_num(r.get("throughput", {}).get("rps")) for r in runs])
        s["server_cpu_us_per_request"] = med(
            [_num(r.get("throughput", {}).get("server_cpu_us_per_request")) for r in runs]
        )
        s["saturated_p50_ms"] = med([_num(r.get("throughput", {}).get("p50_ms")) for r in runs])
        s["saturated_p99_ms"] = med([_num(r.get("throughput", {}).get("p99_ms")) for r in runs])
        s["rss_mib"] = med([_num(r.get("memory", {}).get("rss_mib")) for r in runs])
        s["start_seconds"] = med([_num(r.get("start_seconds")) for r in runs])
        summary[name] = s

    ratios: dict[str, Any] = {}
    lite = summary.get("litellm", {})
    ngx = summary.get("nginx", {})
    for name, s in summary.items():
        ratios[name] = {
            "throughput_vs_litellm": _ratio(s.get("throughput_rps"), lite.get("throughput_rps")),
            "throughput_vs_nginx": _ratio(s.get("throughput_rps"), ngx.get("throughput_rps")),
            "cpu_per_request_litellm_over_this": _ratio(
                lite.get("server_cpu_us_per_request"), s.get("server_cpu_us_per_request")
            ),
        }
    return {"targets": summary, "ratios": ratios, "verdict": verdict(summary, ratios, params)}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def verdict(summary: dict[str, Any], ratios: dict[str, Any], params: Params) -> dict[str, Any]:
    cw = summary.get("costwarden")
    if not cw:
        return {}
    top = max(params.rates)
    lat = cw.get(f"latency@{top}", {})
    ratio = ratios["costwarden"]["throughput_vs_litellm"]
    out: dict[str, Any] = {"rate": top}
    for key, goal in (("added_p50_ms", TARGETS_P50_MS), ("added_p99_ms", TARGETS_P99_MS)):
        value = lat.get(key)
        out[key] = {"value": value, "target": goal, "met": value is not None and value <= goal}
    out["throughput_vs_litellm"] = {
        "value": ratio,
        "target": TARGET_RATIO,
        "met": ratio is not None and ratio >= TARGET_RATIO,
    }
    return out


def print_table(summary: dict[str, Any], params: Params) -> None:
    def fmt(v: Any, digits: int = 2) -> str:
        return "-" if v is None else f"{v:.{digits}f}"

    lat_table = Table(title="latency, open loop (ms; medians over repetitions; added = target minus direct)")
    for col in ("target", "rate /s", "p50", "p99", "added p50", "added p99"):
        lat_table.add_column(col, justify="left" if col == "target" else "right")
    cap_table = Table(title="capacity, closed loop (wrk, one server worker on its own core)")
    for col in ("target", "max req/s", "server CPU µs/req", "× LiteLLM", "× nginx", "RSS MiB"):
        cap_table.add_column(col, justify="left" if col == "target" else "right")
    for name in TARGET_NAMES:
        s = summary["targets"].get(name)
        if s is None:
            continue
        for rate in params.rates:
            lat = s.get(f"latency@{rate}", {})
            if "skipped" in lat:
                lat_table.add_row(name, str(rate), "skipped", lat["skipped"], "", "")
                continue
            lat_table.add_row(
                name,
                str(rate),
                fmt(lat.get("p50_ms")),
                fmt(lat.get("p99_ms")),
                fmt(lat.get("added_p50_ms")),
                fmt(lat.get("added_p99_ms")),
            )
        ratios = summary["ratios"][name]
        cap_table.add_row(
            name,
            fmt(s.get("throughput_rps"), 0),
            fmt(s.get("server_cpu_us_per_request"), 0),
            fmt(ratios["throughput_vs_litellm"], 1),
            fmt(ratios["throughput_vs_nginx"], 2),
            fmt(s.get("rss_mib"), 1),
        )
    console.print(lat_table)
    console.print(cap_table)
    v = summary.get("verdict") or {}
    for key in ("added_p50_ms", "added_p99_ms", "throughput_vs_litellm"):
        if key in v:
            item = v[key]
            mark = "[green]met[/]" if item["met"] else "[red]missed[/]"
            console.print(
                f"  costwarden {key} (latency @ {v['rate']}/s): {item['value']} vs target {item['target']}: {mark}"
            )


# --- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> tuple[Params, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="one short repetition (the default)")
    mode.add_argument("--full", action="store_true", help="three repetitions, long phases")
    parser.add_argument("--reps", type=int, help="repetitions (overrides the mode)")
    parser.add_argument("--rates", default="20,200", help="fixed request rates for the latency phase, req/s")
    parser.add_argument("--latency-seconds", type=float, help="seconds per latency phase (overrides the mode)")
    parser.add_argument("--throughput-seconds", type=float, help="seconds of wrk per target (overrides the mode)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections for max throughput")
    parser.add_argument("--targets", default=",".join(TARGET_NAMES), help="subset of " + ",".join(TARGET_NAMES))
    parser.add_argument(
        "--profile",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="also py-spy the gateway under wrk load for SECONDS (last repetition)",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="nice increment for the whole run (and all it starts), e.g. -5 on a shared machine",
    )
    parser.add_argument("--out", type=Path, default=h.BENCH / "results" / "latest.json")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, configs, ledgers)")
    args = parser.parse_args(argv)

    preset = FULL if args.full else QUICK
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(targets) - set(TARGET_NAMES)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}")
    if "direct" not in targets:
        targets.insert(0, "direct")  # added latency needs the baseline
    params = Params(
        reps=args.reps or int(preset["reps"]),
        rates=[int(r) for r in args.rates.split(",")],
        latency_seconds=args.latency_seconds or float(preset["latency_seconds"]),
        min_samples=int(preset["min_samples"]),
        warmup_seconds=float(preset["warmup_seconds"]),
        throughput_seconds=args.throughput_seconds or float(preset["throughput_seconds"]),
        connections=args.connections,
        targets=targets,
        profile_seconds=args.profile,
        nice=args.nice,
    )
    return params, args


def preflight(params: Params) -> str | None:
    for tool in ("nginx", "wrk", "taskset"):
        if shutil.which(tool) is None:
            return f"{tool} is missing: run bench/setup"
    if "litellm" in params.targets and not h.LITELLM.exists():
        return "the LiteLLM venv is missing: run bench/setup"
    if "pyproxy" in params.targets and not (h.TOOLS / "python").exists():
        return "bench/.venv-tools is missing: run bench/setup"
    for port in (
        UPSTREAM_PORT,
        NGINX_PORT,
        COSTWARDEN_PORT,
        COSTWARDEN_PORT + 1,
        LITELLM_PORT,
        PYPROXY_PORT,
        RAWPROXY_PORT,
        GRANIAN_PORT,
    ):
        h.check_port_free(port)
    return None


def run_all(params: Params, keep: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every repetition of every target; also how much CPU other processes took meanwhile."""
    reps: list[dict[str, Any]] = []
    noise: list[dict[str, Any]] = []
    with h.workspace("cwbench-", keep=keep) as (workdir, procs):
        if keep:
            console.print(f"workdir {workdir}")
        upstream = h.start_nginx(procs, "upstream", h.upstream_block(UPSTREAM_PORT), h.LOAD_CPU)
        h.wait_ready(upstream, f"http://{h.HOST}:{UPSTREAM_PORT}{h.CHAT_PATH}", h.CHAT_BODY, {}, timeout=15)
        for rep in range(1, params.reps + 1):
            wall0, busy0, own0 = time.monotonic(), system_busy_seconds(), own_cpu_seconds()
            up0 = tree_cpu_seconds(upstream.pid)
            for name in params.targets:
                t0 = time.monotonic()
                profile_now = params.profile_seconds if (name.startswith("costwarden") and rep == params.reps) else 0.0
                rep_params = Params(**{**params.__dict__, "profile_seconds": profile_now})
                result = measure_target(name, rep, rep_params, procs, workdir, upstream)
                reps.append(result)
                console.print(_one_line(result, time.monotonic() - t0))
            wall = time.monotonic() - wall0
            ours = (own_cpu_seconds() - own0) + (tree_cpu_seconds(upstream.pid) - up0)
            foreign = (system_busy_seconds() - busy0) - ours
            share = round(max(foreign, 0.0) / (wall * (os.cpu_count() or 1)), 3)
            noise.append(
                {
                    "rep": rep,
                    "wall_s": round(wall, 1),
                    "other_processes_cpu_share": share,
                    "loadavg": Path("/proc/loadavg").read_text().split()[:3],
                }
            )
            console.print(f"  rep {rep}: other processes used {share:.0%} of the machine's CPU meanwhile")
    return reps, noise


def main(argv: list[str] | None = None) -> int:
    params, args = parse_args(argv)
    problem = preflight(params)
    if problem:
        console.print(f"[red]{problem}[/]")
        return 2
    h.pin_self(h.LOAD_CPU)
    if params.nice:
        os.nice(params.nice)  # inherited by everything the run starts: upstream, targets, wrk
    command = "/work/main/.venv/bin/python bench/run.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    meta: dict[str, Any] = {
        "command": command.strip(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": h.machine(),
        "versions": h.versions(),
        "params": params.__dict__,
        "layout": {"load_generator_and_upstream_cpu": h.LOAD_CPU, "server_cpu": h.SERVER_CPU},
        "added_latency": "per repetition: target quantile minus direct's same quantile at the same rate; "
        "then the median over repetitions",
    }
    console.print(f"[bold]bench[/] {meta['command']}  targets={params.targets} reps={params.reps} rates={params.rates}")
    reps, noise = run_all(params, args.keep)
    summary = summarise(reps, params)
    meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    meta["noise"] = noise
    profile = next((r.pop("profile") for r in reps if "profile" in r), None)
    document = {"meta": meta, "summary": summary, "runs": reps, "profile": profile}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print_table(summary, params)
    if profile and "self" in profile:
        console.print(f"costwarden profile ({profile['samples']} samples), top self time:")
        for frame, pct in profile["self"][:12]:
            console.print(f"  {pct:5.1f}%  {frame}", markup=False, highlight=False)
    console.print(f"wrote {args.out}")
    checks = ("ledger_check_latency", "ledger_check_final")
    failed = [(r["target"], r["rep"]) for r in reps if not all(r.get(k, {"ok": True})["ok"] for k in checks)]
    if failed:
        console.print(f"[red]ledger check failed:[/] {failed}")
        return 1
    return 0


def _one_line(r: dict[str, Any], seconds: float) -> str:
    parts = [f"  rep {r['rep']} {r['target']:<10}"]
    for rate, lat in r.get("latency", {}).items():
        if "skipped" in lat:
            parts.append(f"@{rate}: skipped")
        else:
            parts.append(f"@{rate}: p50 {lat['p50_ms']:.2f} p99 {lat['p99_ms']:.2f} ms")
    thr = r.get("throughput", {})
    if thr:
        parts.append(f"max {thr['rps']:.0f} req/s ({thr['server_cpu_us_per_request']:.0f} µs CPU/req)")
    if "memory" in r:
        parts.append(f"RSS {r['memory']['rss_mib']} MiB")
    for key in ("ledger_check_latency", "ledger_check_final"):
        if key in r:
            parts.append(
                f"{key.removeprefix('ledger_check_')} ledger {'ok' if r[key]['ok'] else 'MISMATCH ' + str(r[key])}"
            )
    parts.append(f"[{seconds:.0f}s]")
    return "  ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
