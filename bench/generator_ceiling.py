"""The load generator's own ceiling, against a target that is never the bottleneck (nginx answering
from memory on the other core), next to wrk on the same target.

    python bench/generator_ceiling.py [--seconds 5] [--out bench/results/bench_generator.json]

Measures, with the generator pinned to CPU 0 and nginx to CPU 1 (one worker):
  * closed loop: requests/s `costwarden bench` completes with 1, 16 and 64 in flight;
  * open loop: for rising arrival rates, the rate achieved and how late the generator sent each
    request (its timing error: p50 / p99 / max), until it can no longer keep up;
  * wrk (1 thread, 64 connections, the same POST body) on the same target.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from costwarden.bench import api  # noqa: E402
from costwarden.bench.results import Run  # noqa: E402

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp};
  server {{
    listen 127.0.0.1:{port};
    keepalive_requests 1000000;
    location / {{ default_type application/json; return 200 '{{"id":"x","choices":[]}}'; }}
  }}
}}
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_nginx(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, port=port))
    proc = subprocess.Popen(["taskset", "-c", "1", nginx, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)])
    time.sleep(0.5)
    return proc, f"http://127.0.0.1:{port}"


def row(run: Run) -> dict[str, object]:
    late = run.generator_late_ms
    return {
        "offered": run.offered_rate,
        "concurrency": run.concurrency,
        "achieved_rps": round(run.throughput_rps, 1),
        "errors": run.errors,
        "p50_ms": run.latency_ms.p50 if run.latency_ms else None,
        "p99_ms": run.latency_ms.p99 if run.latency_ms else None,
        "late_p50_ms": round(late.p50, 3) if late else None,
        "late_p99_ms": round(late.p99, 3) if late else None,
        "late_max_ms": round(late.max, 3) if late else None,
    }


def wrk(url: str, seconds: float) -> float:
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}).decode()
    env = {**os.environ, "BENCH_BODY": body}
    argv = ["taskset", "-c", "0", "wrk", "-t1", "-c64", f"-d{seconds:g}s", "-s", str(ROOT / "bench/post.lua"), url]
    out = subprocess.run(argv, capture_output=True, text=True, env=env, check=True).stdout
    match = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    return float(match.group(1)) if match else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/bench_generator.json")
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    tmp = Path(tempfile.mkdtemp(prefix="cw-loadgen-"))
    proc, url = start_nginx(tmp)
    try:
        closed = [row(api.bench(url, "m", concurrency=c, duration_s=args.seconds).runs[0]) for c in (1, 16, 64)]
        opened: list[dict[str, object]] = []
        for rate in (250, 500, 1000, 1500, 2000, 3000, 4000):
            run = api.bench(url, "m", rate=rate, duration_s=args.seconds).runs[0]
            opened.append(row(run))
            if run.throughput_rps < 0.9 * rate:
                break
        wrk_rps = wrk(url + "/v1/chat/completions", args.seconds)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    found = {
        "closed_loop": closed,
        "open_loop": opened,
        "wrk_rps": wrk_rps,
        "cpu_count": os.cpu_count(),
        "loadavg": os.getloadavg()[0],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(found, option=orjson.OPT_INDENT_2))
    print(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
