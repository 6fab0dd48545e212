#!/usr/bin/env python
"""Keys and /metrics at organisation scale (issue 14), in process, with the product's own classes.

    .venv/bin/python bench/scale_keys_metrics.py                       # this tree (~1-2 minutes)
    .venv/bin/python bench/scale_keys_metrics.py --keys 10000 --reps 3
    # "before": the same script against an older tree's sources
    git archive main src | tar -x -C /tmp/cw-before && \\
        PYTHONPATH=/tmp/cw-before/src .venv/bin/python bench/scale_keys_metrics.py

Keys: N keys in a SQLite ledger (inserted in bulk), a KeyRing loaded from it, then one key created
per round and the ring refreshed, as the background task does every `key_refresh_seconds`. Reported:
the refresh's wall time and the longest event-loop stall seen by a 1 ms sleep probe meanwhile (what
a `/healthz` arriving then would wait), for the steady-state refresh and, where the tree has one,
the periodic full reload.

/metrics: one request for each of 500 teams x 20 deployments through the `Observe` stage, then the
exposition rendered as `/metrics` renders it: its size, lines, wall and CPU time, and the longest
event-loop stall during a render. Figures are medians over `--reps` rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from costwarden.chain.exchange import Exchange
from costwarden.chain.target import Route
from costwarden.config.models import Deployment
from costwarden.domain.keys import KeyIdentity, StoredKey, format_key
from costwarden.domain.record import Protocol
from costwarden.domain.usage import Usage
from costwarden.observability.metrics import GatewayMetrics, Observe
from costwarden.services.keyring import KeyRing
from costwarden.storage.sqlite import SQLiteStore

try:  # trees before issue 14 render /metrics on the event loop
    from costwarden.observability.exposition import Exposition
except ImportError:
    Exposition = None


async def stall_during(work: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """(wall seconds of `work`, longest event-loop stall in seconds while it ran)."""
    stalls: list[float] = []
    running = True

    async def probe() -> None:
        while running:
            began = time.perf_counter()
            await asyncio.sleep(0.001)
            stalls.append(time.perf_counter() - began - 0.001)

    prober = asyncio.create_task(probe())
    await asyncio.sleep(0.02)
    stalls.clear()
    began = time.perf_counter()
    await work()
    wall = time.perf_counter() - began
    running = False
    await prober
    return wall, max(stalls, default=0.0)


def fill_keys(path: Path, n: int) -> None:
    salt = "bench"
    digest = hashlib.sha256((salt + "secret").encode()).hexdigest()
    with sqlite3.connect(path) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(api_keys)")}
        numbered = "change_seq" in columns
        rows = (
            (f"k{i:07d}", "", f"team-{i % 500:03d}", "app", "prod", "{}", None, 0, salt, digest, 1.7e9 + i)
            + ((i + 1,) if numbered else ())
            for i in range(n)
        )
        names = "key_id, name, team, project, environment, tags, deployments, allow_client_tags, salt, "
        names += "secret_hash, created_at" + (", change_seq" if numbered else "")
        marks = ", ".join("?" * (12 if numbered else 11))
        conn.executemany(f"INSERT INTO api_keys ({names}) VALUES ({marks})", rows)
        if numbered:
            conn.execute("UPDATE api_key_changes SET last_seq = ?", (n,))


def new_key(i: int) -> StoredKey:
    identity = KeyIdentity(key_id=f"new{i}", team="team-000", project="app", environment="prod")
    return StoredKey(identity, "bench", hashlib.sha256(b"benchsecret").hexdigest(), time.time())


async def bench_keys(n: int, reps: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "keys.db"
        store = SQLiteStore(str(path))
        await store.open()
        fill_keys(path, n)
        ring = KeyRing(store, [], 2.0)
        load_wall, load_stall = await stall_during(ring.refresh)
        assert ring.resolve(format_key("k0000001", "secret")) is not None
        walls, stalls = [], []
        for i in range(reps):
            await store.add_key(new_key(i))
            wall, stall = await stall_during(ring.refresh)
            assert ring.resolve(format_key(f"new{i}", "secret")) is not None
            walls.append(wall)
            stalls.append(stall)
        result: dict[str, Any] = {
            "keys": n,
            "start_load_s": round(load_wall, 4),
            "start_load_stall_ms": round(load_stall * 1000, 1),
            "refresh_s": round(statistics.median(walls), 4),
            "refresh_stall_ms": round(statistics.median(stalls) * 1000, 1),
            "refresh_stall_max_ms": round(max(stalls) * 1000, 1),
        }
        reload = getattr(ring, "reload", None)
        if reload is not None:
            fulls = [await stall_during(reload) for _ in range(reps)]
            result["full_reload_s"] = round(statistics.median(w for w, _ in fulls), 4)
            result["full_reload_stall_ms"] = round(statistics.median(s for _, s in fulls) * 1000, 1)
        await store.close()
        return result


def exchange(n: int, team: str, route: Route) -> Exchange:
    path = "/v1/chat/completions"
    ex = Exchange(f"r{n}", "POST", path, b"", [], b"{}", Protocol.OPENAI, path)
    ex.identity = KeyIdentity(key_id=f"k{n}", team=team, project=f"{team}-app", environment="prod")
    ex.route = route
    ex.latency_ms = 12.5
    ex.upstream_seconds = 0.01
    ex.usage = Usage(input_tokens=100, output_tokens=20, cached_tokens=5)
    ex.cost = Decimal("0.000123")
    return ex


async def observe_organisation(metrics: GatewayMetrics, teams: int, deployments: int, prefix: str) -> None:
    """One request for each team x deployment (`{prefix}-00`, ...) through the `Observe` stage."""
    stage = Observe(metrics)
    routes = [
        Route.of(Deployment(name=f"{prefix}-{d:02d}", protocol="openai", upstream="http://127.0.0.1:9/v1"))
        for d in range(deployments)
    ]
    n = 0
    for t in range(teams):
        for route in routes:
            n += 1
            ex = exchange(n, f"team-{t:03d}", route)
            await stage.enter(ex)
            await stage.finish(ex)


async def bench_metrics(teams: int, deployments: int, reps: int) -> dict[str, Any]:
    registry = CollectorRegistry()
    await observe_organisation(GatewayMetrics(registry), teams, deployments, "deployment")
    if Exposition is not None:
        render = Exposition(registry).render
    else:

        async def render() -> bytes:
            return generate_latest(registry)

    body = await render()
    walls, cpus, stalls = [], [], []
    for _ in range(reps):
        cpu = time.process_time()
        wall, stall = await stall_during(render)
        cpus.append(time.process_time() - cpu)
        walls.append(wall)
        stalls.append(stall)
    return {
        "label_sets": f"{teams} x {deployments}",
        "bytes": len(body),
        "lines": body.count(b"\n"),
        "render_s": round(statistics.median(walls), 4),
        "render_cpu_s": round(statistics.median(cpus), 4),
        "loop_stall_ms": round(statistics.median(stalls) * 1000, 1),
        "created_series": body.count(b"_created"),
        "off_the_loop": Exposition is not None,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--teams", type=int, default=500)
    parser.add_argument("--deployments", type=int, default=20)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, Any] = {"python": sys.version.split()[0], "keys": [], "metrics": None}
    idle = [await stall_during(lambda: asyncio.sleep(0.3)) for _ in range(3)]
    # The probe's own noise: the stall seen while the loop has nothing else to do.
    print(json.dumps({"idle_stall_ms": round(statistics.median(s for _, s in idle) * 1000, 1)}), flush=True)
    for n in args.keys:
        results["keys"].append(await bench_keys(n, args.reps))
        print(json.dumps(results["keys"][-1]), flush=True)
    results["metrics"] = await bench_metrics(args.teams, args.deployments, args.reps)
    print(json.dumps(results["metrics"]), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
