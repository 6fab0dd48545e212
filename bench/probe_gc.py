#!/usr/bin/env python
"""What the garbage collector walks in the gateway while 30-day reports and `/metrics` scrapes run
(issue 14 item 2): per collection, its generation, its duration and the objects it walked; per
phase, the tracked objects left behind; with `--census`, the types of a full collection's objects.

    PYTHONPATH=src:bench .venv/bin/python bench/probe_gc.py --ledger sqlite:////tmp/cw-probes-sqlite/ledger.db

The gateway runs as bench/probes.py runs it (the same app, heap frozen at start, the same metrics
of 500 teams x 20 deployments), on a ledger bench/probes.py filled; the reports and scrapes come
from a thread of this process (http.client), one after the other. Results: bench/results/probe_gc.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
import json
import socket
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from probes import REPORT, TOKEN, fill_metrics, started


class Collections:
    """Each collection: (generation, wall seconds, its thread's CPU seconds (the pause without the
    time the machine gave the process no CPU), objects in the generations it walked, the references
    those objects hold: what the collector visits); with `census`, the types holding them."""

    def __init__(self, census: bool) -> None:
        self.events: list[tuple[int, float, float, int, int]] = []
        self.census: Counter[str] = Counter()
        self._census = census
        self._began = self._cpu = 0.0
        self._walked = self._refs = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        generation = info["generation"]
        if phase == "start":
            objects = [o for g in range(generation + 1) for o in gc.get_objects(g)]
            self._walked = len(objects)
            self._refs = 0
            for o in objects:
                held = len(gc.get_referents(o))
                self._refs += held
                if self._census:
                    self.census[f"gen{generation}:{type(o).__qualname__}"] += held
            del objects
            self._began, self._cpu = time.perf_counter(), time.thread_time()
        else:
            wall, cpu = time.perf_counter() - self._began, time.thread_time() - self._cpu
            self.events.append((generation, wall, cpu, self._walked, self._refs))

    def take(self) -> dict[str, Any]:
        events, self.events = self.events, []
        out: dict[str, Any] = {}
        for g in (0, 1, 2):
            mine = [e for e in events if e[0] == g]
            if mine:
                out[f"gen{g}"] = {
                    "n": len(mine),
                    "max_ms": round(max(e[1] for e in mine) * 1000, 2),
                    "median_ms": round(statistics.median(e[1] for e in mine) * 1000, 2),
                    "cpu_max_ms": round(max(e[2] for e in mine) * 1000, 2),
                    "walked_max": max(e[3] for e in mine),
                    "references_max": max(e[4] for e in mine),
                }
        return out


def tracked() -> dict[str, int]:
    return {"tracked": len(gc.get_objects()), "frozen": gc.get_freeze_count()}


def requests(port: int, path: str, reps: int) -> list[float]:
    for _ in range(100):  # the fast engine may listen a moment after the server says it started
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except ConnectionRefusedError:
            time.sleep(0.05)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    times = []
    try:
        for _ in range(reps):
            began = time.perf_counter()
            conn.request("GET", path, headers={"authorization": f"Bearer {TOKEN}"})
            reply = conn.getresponse()
            reply.read()
            assert reply.status == 200, reply.status
            times.append(time.perf_counter() - began)
    finally:
        conn.close()
    return times


async def run(args: argparse.Namespace) -> dict[str, Any]:
    app, server, serving = await started(args, Path(args.dir))
    out: dict[str, Any] = {"after_start": tracked()}
    watch = Collections(args.census)
    try:
        await fill_metrics(app, args.teams, args.deployments)
        out["after_metrics"] = tracked()
        gc.callbacks.append(watch)
        for phase, path in (("scrape", "/metrics"), ("report", REPORT)):
            watch.take()
            times = await asyncio.to_thread(requests, args.port, path, args.reps)
            out[phase] = {"median_s": round(statistics.median(times), 3), "gc": watch.take(), **tracked()}
        if args.census:
            out["census_top"] = dict(watch.census.most_common(25))
    finally:
        if watch in gc.callbacks:
            gc.callbacks.remove(watch)
        server.should_exit = True
        await serving
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--teams", type=int, default=500)
    parser.add_argument("--deployments", type=int, default=20)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--port", type=int, default=18792)
    parser.add_argument("--dir", default="/tmp/costwarden-probe-gc")
    parser.add_argument("--census", action="store_true", help="the types whose references collections visit")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "probe_gc.json"))
    args = parser.parse_args()
    args.engine = "fast"
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    import uvloop

    out = uvloop.run(run(args))
    print(json.dumps(out, indent=1))
    Path(args.out).write_text(json.dumps({"args": vars(args), **out}, indent=2) + "\n")


if __name__ == "__main__":
    main()
