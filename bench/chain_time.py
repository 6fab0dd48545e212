"""The chain's own time per request and the gateway's CPU per request, on the fast engine with
metering and the SQLite ledger, without wrk or nginx (issue 11, phase 2).

A static keep-alive upstream (raw asyncio protocols, uvloop) and the gateway each run in their own
process; the load is generated here, on raw keep-alive connections:

* open loop at `--rate` req/s for `--seconds`: the chain's own time per request from the ledger
  (`latency_ms - upstream_ms` of each record), p50 / p99; the client's p50 through the gateway, and
  what it adds over the same client's p50 to the upstream alone (an open loop of up to 3 s first);
* closed loop on `--connections` connections for `--seconds`: req/s and the gateway's CPU
  microseconds per request (its utime + stime over the phase, from /proc), and the part of it
  spent outside the main thread (`threads_cpu_us_per_request`: the SQLite ledger's writer).

`--tree DIR` runs another checkout's `src/` (e.g. a `git worktree` or `git archive` of main), so a
before / after comparison runs side by side, alternating, in one invocation:

    PYTHONPATH=$PWD/src .venv/bin/python bench/chain_time.py --trees /tmp/main-tree,. --reps 5

`--profile FILE` runs the (first) gateway under cProfile and writes its stats on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
HOST = "127.0.0.1"
KEY = "sk-chain-bench-key-0001"
CHAT_PATH = "/v1/chat/completions"
CHAT_BODY = b'{"model":"bench-model","messages":[{"role":"user","content":"hello"}],"max_tokens":16}'
ANSWER = (
    b'{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-model",'
    b'"system_fingerprint":"fp_bench","choices":[{"index":0,"message":{"role":"assistant",'
    b'"content":"Hello! How can I help you today?"},"logprobs":null,"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18}}'
)
UPSTREAM = f"""
import asyncio, sys, uvloop
ANSWER = {ANSWER!r}
HEAD = b"HTTP/1.1 200 OK\\r\\ncontent-type: application/json\\r\\ncontent-length: %d\\r\\n\\r\\n"
RESPONSE = HEAD % len(ANSWER) + ANSWER
class P(asyncio.Protocol):
    def connection_made(self, t): self.t, self.buf = t, b""
    def data_received(self, data):
        self.buf += data
        while True:
            head_end = self.buf.find(b"\\r\\n\\r\\n")
            if head_end < 0: return
            head = self.buf[:head_end].lower()
            i = head.find(b"content-length:")
            n = int(head[i + 15:].split(b"\\r\\n", 1)[0]) if i >= 0 else 0
            if len(self.buf) < head_end + 4 + n: return
            self.buf = self.buf[head_end + 4 + n:]
            self.t.write(RESPONSE)
async def main():
    server = await asyncio.get_running_loop().create_server(P, "{HOST}", int(sys.argv[1]), backlog=1024)
    await server.serve_forever()
uvloop.run(main())
"""


PROFILED = """import cProfile, signal
profile = cProfile.Profile()
profile.enable()
signal.signal(signal.SIGUSR1, lambda *_: (profile.disable(), profile.dump_stats({out!r})))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def config(workdir: Path, port: int, upstream: int) -> Path:
    cfg = workdir / "costwarden.yaml"
    cfg.write_text(
        f"""server: {{host: {HOST}, port: {port}, engine: fast, admin_port: {free_port()},
  keepalive_max_requests: 1000000000}}
storage: {{ledger: "sqlite:///{workdir / "ledger.db"}", spool_dir: {workdir / "spool"}}}
environments: [prod]
teams: [{{name: bench, projects: [load]}}]
deployments:
  - name: bench-model
    protocol: openai
    upstream: http://{HOST}:{upstream}
    pricing: {{input_per_1m: "0.50", output_per_1m: "1.50"}}
keys:
  - {{id: bench, key: "{KEY}", team: bench, project: load, environment: prod}}
"""
    )
    return cfg


def cpu_seconds(pid: int, task: int | None = None) -> float:
    stat = f"/proc/{pid}/stat" if task is None else f"/proc/{pid}/task/{task}/stat"
    fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_seconds(pid: int) -> float:
    """CPU seconds of the process's threads but its main one (the event loop): the SQLite ledger's
    writer thread above all (its reader, probe and other worker threads are idle under load)."""
    total = 0.0
    for task in os.listdir(f"/proc/{pid}/task"):
        if int(task) != pid:
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                total += cpu_seconds(pid, int(task))
    return total


REQUEST = (
    f"POST {CHAT_PATH} HTTP/1.1\r\nhost: {HOST}\r\nauthorization: Bearer {KEY}\r\n"
    f"content-type: application/json\r\ncontent-length: {len(CHAT_BODY)}\r\n\r\n"
).encode() + CHAT_BODY


class Client:
    """One keep-alive connection; `call` sends a request and returns its status."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def call(self) -> int:
        self.writer.write(REQUEST)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        i = lower.find(b"content-length:")
        if i < 0:
            raise RuntimeError(f"no content-length: {head!r}")
        await self.reader.readexactly(int(lower[i + 15 :].split(b"\r\n", 1)[0]))
        return status


async def connect(port: int, n: int) -> list[Client]:
    return [Client(*await asyncio.open_connection(HOST, port)) for _ in range(n)]


async def wait_ready(port: int, proc: subprocess.Popen[bytes], limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}: see {proc.args}")
        try:
            (client,) = await connect(port, 1)
            status = await client.call()
            client.writer.close()
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("gateway not ready")


async def open_loop(port: int, rate: float, seconds: float, seen: list[float] | None = None) -> int:
    """`rate` requests a second for `seconds`; each one's time as the client saw it (µs) into `seen`."""
    clients = await connect(port, 8)
    idle = list(clients)
    sent = 0
    tasks: set[asyncio.Task[int]] = set()

    async def one(client: Client) -> int:
        t0 = time.perf_counter()
        try:
            return await client.call()
        finally:
            if seen is not None:
                seen.append((time.perf_counter() - t0) * 1e6)
            idle.append(client)

    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        due = start + sent / rate
        if due > time.perf_counter():
            await asyncio.sleep(due - time.perf_counter())
        if idle:
            task = asyncio.create_task(one(idle.pop()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        sent += 1
    await asyncio.gather(*tasks)
    for c in clients:
        c.writer.close()
    return sent


async def closed_loop(port: int, connections: int, seconds: float, pid: int) -> dict[str, float]:
    clients = await connect(port, connections)
    done = 0
    stop = False

    async def drive(client: Client) -> None:
        nonlocal done
        while not stop:
            if await client.call() != 200:
                raise RuntimeError("non-200 under load")
            done += 1

    tasks = [asyncio.create_task(drive(c)) for c in clients]
    await asyncio.sleep(0.5)  # warm
    done0, cpu0, threads0, t0 = done, cpu_seconds(pid), thread_seconds(pid), time.perf_counter()
    await asyncio.sleep(seconds)
    done1, cpu1, threads1, t1 = done, cpu_seconds(pid), thread_seconds(pid), time.perf_counter()
    stop = True
    await asyncio.gather(*tasks)
    for c in clients:
        c.writer.close()
    n = done1 - done0
    return {
        "rps": round(n / (t1 - t0), 1),
        "cpu_us_per_request": round((cpu1 - cpu0) / max(n, 1) * 1e6, 1),
        "threads_cpu_us_per_request": round((threads1 - threads0) / max(n, 1) * 1e6, 1),
    }


def own_times(ledger: Path, after: int) -> tuple[int, dict[str, float]]:
    with contextlib.closing(sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=10)) as db:
        rows = db.execute(
            "SELECT rowid, latency_ms - upstream_ms FROM ledger WHERE rowid > ? AND upstream_ms IS NOT NULL", (after,)
        ).fetchall()
    own = sorted(r[1] * 1000.0 for r in rows)
    last = max((r[0] for r in rows), default=after)
    if not own:
        return last, {"n": 0}
    p50, p99 = own[len(own) // 2], own[int(len(own) * 0.99)]
    return last, {"n": len(own), "own_p50_us": round(p50, 1), "own_p99_us": round(p99, 1)}


def max_rowid(ledger: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=10)) as db:
        return int(db.execute("SELECT COALESCE(MAX(rowid), 0) FROM ledger").fetchone()[0])


async def settle(ledger: Path) -> None:
    last = -1
    while (rows := max_rowid(ledger)) != last:
        last = rows
        await asyncio.sleep(0.6)


def start_gateway(tree: Path, cfg: Path, log: Path, profile: str | None) -> subprocess.Popen[bytes]:
    run = "from costwarden.cli.main import app; app()"
    if profile:
        run = PROFILED.format(out=profile) + run
    argv = [str(PYTHON), "-c", run, "serve", "--config", str(cfg)]
    env = {**os.environ, "PYTHONPATH": str((tree / "src").resolve())}
    with open(log, "wb") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


def start_upstream(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(PYTHON), "-c", UPSTREAM, str(port)])


def save(path: str, data: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(data, indent=2))


async def one_rep(tree: Path, args: argparse.Namespace, upstream: int, profile: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="chain-time-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        cfg = config(workdir, port, upstream)
        proc = start_gateway(tree, cfg, workdir / "gateway.log", profile)
        try:
            if args.server_cpu is not None and args.server_cpu >= 0:
                os.sched_setaffinity(proc.pid, {args.server_cpu})
            try:
                await wait_ready(port, proc)
            except RuntimeError:
                print((workdir / "gateway.log").read_text()[-3000:], file=sys.stderr)
                raise
            ledger = workdir / "ledger.db"
            await closed_loop(port, args.connections, 1.0, proc.pid)  # warm-up
            await settle(ledger)
            after = max_rowid(ledger)
            direct: list[float] = []
            await open_loop(upstream, args.rate, min(args.seconds, 3.0), direct)  # the upstream alone, same client
            seen: list[float] = []
            await open_loop(port, args.rate, args.seconds, seen)
            await settle(ledger)
            _, own = own_times(ledger, after)
            own["client_p50_us"] = round(statistics.median(seen), 1)
            own["added_p50_us"] = round(statistics.median(seen) - statistics.median(direct), 1)
            thr = await closed_loop(port, args.connections, args.seconds, proc.pid)
            return {"tree": str(tree), **own, **thr}
        finally:
            if profile:
                proc.send_signal(signal.SIGUSR1)
                await asyncio.sleep(2)
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trees", default=".", help="comma-separated checkouts whose src/ to run, alternating")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--server-cpu", type=int, default=1 if (os.cpu_count() or 1) > 1 else None, help="pin the gateway (-1: do not)"
    )
    parser.add_argument("--profile", default=None, help="cProfile output file (first tree, one rep)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    trees = [Path(t) for t in args.trees.split(",")]
    upstream = free_port()
    up = start_upstream(upstream)
    results: list[dict[str, Any]] = []
    try:
        await asyncio.sleep(0.5)
        if args.profile:
            results.append(await one_rep(trees[0], args, upstream, args.profile))
        else:
            for rep in range(args.reps):
                for tree in trees:
                    result = await one_rep(tree, args, upstream, None)
                    print(json.dumps({"rep": rep, **result}), flush=True)
                    results.append(result)
    finally:
        up.terminate()
        up.wait(10)
    summary = {}
    for tree in trees:
        mine = [r for r in results if r["tree"] == str(tree)]
        summary[str(tree)] = {
            key: statistics.median(r[key] for r in mine)
            for key in (
                "own_p50_us",
                "own_p99_us",
                "client_p50_us",
                "added_p50_us",
                "rps",
                "cpu_us_per_request",
                "threads_cpu_us_per_request",
            )
            if all(key in r for r in mine)
        }
    print(json.dumps({"median": summary}, indent=2))
    if args.out:
        save(args.out, {"runs": results, "median": summary})


if __name__ == "__main__":
    if sys.platform != "linux":
        raise SystemExit("needs /proc (Linux)")
    import uvloop

    uvloop.run(main())
