"""What the gateway adds to each chunk of a streamed answer (issue 11: "a stream's chunks are
relayed with no added delay beyond 50 µs each").

A streaming upstream (raw asyncio protocol, uvloop, its own process) answers every chat request
with `--chunks` server-sent events, one every `--gap-ms`, each carrying the wall time at which it
was written (`"t"`), then a usage event and `data: [DONE]`, chunked. The client (this process, a
raw keep-alive connection, chunked decoding by hand) records when each event arrives and keeps
`arrival - t` per chunk. It streams the same answers from the upstream directly and through the
gateway (fast engine, metering + SQLite ledger, bench/chain_time.py's config), and through a bare
byte pipe in Python (uvloop protocols, no parsing: the floor of one more hop, pinned where the
gateway is), in turn per repetition; what the gateway adds per chunk is the difference of the
medians (and of the p99s) to the direct stream, and to the pipe's.
The first event of each answer is left out: it carries the request's own path through the gateway
(the chain, the upstream connection), which bench/chain_time.py measures.

    PYTHONPATH=$PWD/src .venv/bin/python bench/stream_relay.py --reps 3 --streams 40 --chunks 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import chain_time as ct

BODY = b'{"model":"bench-model","stream":true,"messages":[{"role":"user","content":"hello"}],"max_tokens":64}'
UPSTREAM = """
import asyncio, sys, time, uvloop
CHUNKS, GAP = int(sys.argv[2]), float(sys.argv[3]) / 1000
HEAD = (b"HTTP/1.1 200 OK\\r\\ncontent-type: text/event-stream\\r\\ntransfer-encoding: chunked\\r\\n\\r\\n")
def chunk(data): return b"%x\\r\\n%s\\r\\n" % (len(data), data)
def event(i):
    return (b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"bench-model",'
            b'"choices":[{"index":0,"delta":{"content":"tok"},"finish_reason":null}],"t":%r}\\n\\n' % time.time())
USAGE = (b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"bench-model","choices":[],'
         b'"usage":{"prompt_tokens":9,"completion_tokens":%d,"total_tokens":%d}}\\n\\n')
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
            asyncio.get_running_loop().create_task(self.answer())
    async def answer(self):
        self.t.write(HEAD)
        for i in range(CHUNKS):
            await asyncio.sleep(GAP)
            self.t.write(chunk(event(i)))
        self.t.write(chunk(USAGE % (CHUNKS, CHUNKS + 9)) + chunk(b"data: [DONE]\\n\\n") + b"0\\r\\n\\r\\n")
async def main():
    server = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    await server.serve_forever()
uvloop.run(main())
"""
# The floor of one more hop in Python: a byte pipe (uvloop protocols, no parsing), each client
# connection piped to its own upstream connection; what arrives is written on at once.
PIPE = """
import asyncio, sys, uvloop
class Up(asyncio.Protocol):
    def __init__(self, down): self.down = down
    def connection_made(self, t): self.t = t
    def data_received(self, data): self.down.write(data)
    def connection_lost(self, exc): self.down.close()
class Down(asyncio.Protocol):
    def connection_made(self, t):
        self.t, self.up, self.early = t, None, []
        asyncio.get_running_loop().create_task(self.connect())
    async def connect(self):
        loop = asyncio.get_running_loop()
        _, self.up = await loop.create_connection(lambda: Up(self.t), "127.0.0.1", int(sys.argv[2]))
        for data in self.early: self.up.t.write(data)
    def data_received(self, data):
        if self.up is None: self.early.append(data)
        else: self.up.t.write(data)
    def connection_lost(self, exc):
        if self.up is not None: self.up.t.close()
async def main():
    server = await asyncio.get_running_loop().create_server(Down, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    await server.serve_forever()
uvloop.run(main())
"""
STAMP = re.compile(rb'"t":([0-9.]+)')


class Streamer:
    """One keep-alive connection; `stream` sends a streaming request and returns each stamped
    event's delay (arrival - stamp, µs), in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, auth: bool) -> None:
        self.reader, self.writer = reader, writer
        headers = f"POST {ct.CHAT_PATH} HTTP/1.1\r\nhost: {ct.HOST}\r\ncontent-type: application/json\r\n"
        if auth:
            headers += f"authorization: Bearer {ct.KEY}\r\n"
        self.request = f"{headers}content-length: {len(BODY)}\r\n\r\n".encode() + BODY

    async def stream(self) -> list[float]:
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        if head[9:12] != b"200" or b"chunked" not in head.lower():
            raise RuntimeError(f"not a chunked 200: {head!r}")
        delays: list[float] = []
        pending = b""
        while True:
            size = int((await self.reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            data = (await self.reader.readexactly(size + 2))[:-2]
            now = time.time()
            if size == 0:
                return delays
            pending += data
            *events, pending = pending.split(b"\n\n")
            for e in events:
                m = STAMP.search(e)
                if m:
                    delays.append((now - float(m.group(1))) * 1e6)


async def run_streams(port: int, auth: bool, streams: int) -> list[float]:
    """`streams` answers one after the other; the delays of every event but each answer's first."""
    streamer = Streamer(*await asyncio.open_connection(ct.HOST, port), auth=auth)
    try:
        out: list[float] = []
        for _ in range(streams):
            delays = await streamer.stream()
            out.extend(delays[1:])
        return out
    finally:
        streamer.writer.close()


async def wait_ready(port: int, proc: subprocess.Popen[bytes], limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}")
        try:
            await run_streams(port, True, 1)
            return
        except (OSError, RuntimeError, asyncio.IncompleteReadError):
            await asyncio.sleep(0.2)
    raise RuntimeError("gateway not ready")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def one_rep(args: argparse.Namespace, upstream: int, pipe: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="stream-relay-") as tmp:
        workdir = Path(tmp)
        port = ct.free_port()
        cfg = ct.config(workdir, port, upstream)
        proc = ct.start_gateway(Path(args.tree), cfg, workdir / "gateway.log", None)
        try:
            if args.server_cpu >= 0:
                os.sched_setaffinity(proc.pid, {args.server_cpu})
            await wait_ready(port, proc)
            await run_streams(port, True, 3)  # warm-up
            direct = await run_streams(upstream, False, args.streams)
            piped = await run_streams(pipe, False, args.streams)
            gateway = await run_streams(port, True, args.streams)
        finally:
            proc.terminate()
            proc.wait(60)
    out: dict[str, Any] = {"events": len(gateway)}
    for q, name in ((0.5, "p50"), (0.99, "p99")):
        d, f, g = pct(direct, q), pct(piped, q), pct(gateway, q)
        out |= {f"direct_{name}_us": round(d, 1), f"pipe_{name}_us": round(f, 1), f"gateway_{name}_us": round(g, 1)}
        out |= {f"added_{name}_us": round(g - d, 1), f"over_pipe_{name}_us": round(g - f, 1)}
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--streams", type=int, default=40, help="answers per repetition and side")
    parser.add_argument("--chunks", type=int, default=50, help="events per answer")
    parser.add_argument("--gap-ms", type=float, default=2.0, help="between two events of an answer")
    parser.add_argument("--tree", default=str(ct.ROOT), help="the checkout whose src/ the gateway runs")
    parser.add_argument("--server-cpu", type=int, default=1 if (os.cpu_count() or 1) > 1 else -1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    upstream = ct.free_port()
    upstream_argv = [str(ct.PYTHON), "-c", UPSTREAM, str(upstream), str(args.chunks), str(args.gap_ms)]
    up = subprocess.Popen(upstream_argv)  # noqa: ASYNC220 (started once, before any measurement)
    pipe = ct.free_port()
    piper = subprocess.Popen([str(ct.PYTHON), "-c", PIPE, str(pipe), str(upstream)])  # noqa: ASYNC220
    if args.server_cpu >= 0:
        os.sched_setaffinity(piper.pid, {args.server_cpu})  # where the gateway runs
    results = []
    try:
        await asyncio.sleep(0.5)
        for rep in range(args.reps):
            result = await one_rep(args, upstream, pipe)
            print(json.dumps({"rep": rep, **result}), flush=True)
            results.append(result)
    finally:
        for p in (piper, up):
            p.terminate()
            p.wait(10)
    keys = [k for k in results[0] if k != "events"]
    median = {k: round(statistics.median(r[k] for r in results), 1) for k in keys}
    print(json.dumps({"median": median}, indent=2))
    if args.out:
        saved = {"args": vars(args), "runs": results, "median": median}
        Path(args.out).write_text(json.dumps(saved, indent=2))  # noqa: ASYNC240 (after the measurement)


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
