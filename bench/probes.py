#!/usr/bin/env python
"""`/healthz` and `/readyz` latency while `/metrics` scrapes and 30-day reports run (issue 14).

    .venv/bin/python bench/probes.py                          # fills 1M records (SQLite), then probes
    .venv/bin/python bench/probes.py --reuse                  # the ledger of the last run
    .venv/bin/python bench/probes.py --ledger postgresql://127.0.0.1:5432/costwarden_scale --reuse
    .venv/bin/python bench/probes.py --reuse --engine asgi --trace   # uvicorn's engine; in-process monitors

The gateway (the product's ASGI app and its lifespan, served as `costwarden serve` serves it on
`--engine`: `fast`, the default, the fast engine's protocol on the port and uvicorn running the
lifespan only; `asgi`, uvicorn with uvloop and the gateway's own HTTP protocol) runs in this
process on a ledger filled with bench/scale.py's records
(30 days, 500 teams, 10,000 keys, 20 deployments, through `store.write`). Its metrics hold one
request for each of 500 teams x 20 deployments (through the `Observe` stage, as traffic would
leave them). A separate client process probes `/healthz` and `/readyz` (one connection each,
a probe every 5 ms) during four phases: idle; back-to-back `/metrics` scrapes; back-to-back
`/admin/v1/spend?since=30d&group_by=team,deployment`; both at once. Per phase and probe: p50,
p99, max and count; per phase the scrapes' and reports' median time; with `--trace`, what
bench/probe_trace.py saw in the gateway's process. Results go to
bench/results/probes.json.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

TOKEN = "bench-admin-token-0123456789abcdef"
REPORT = "/admin/v1/spend?since=30d&group_by=team,deployment"
PHASES = {"idle": (), "scrape": ("/metrics",), "report": (REPORT,), "scrape+report": ("/metrics", REPORT)}


# The client (its own process, so its work does not share the gateway's event loop or GIL).


def _get(conn: http.client.HTTPConnection, path: str) -> float:
    began = time.perf_counter()
    conn.request("GET", path, headers={"authorization": f"Bearer {TOKEN}"})
    reply = conn.getresponse()
    reply.read()
    if reply.status != 200:
        raise SystemExit(f"{path}: HTTP {reply.status}")
    return time.perf_counter() - began


def _loop(port: int, path: str, stop: threading.Event, out: list[float], pause: float) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        while not stop.is_set():
            out.append(_get(conn, path))
            time.sleep(pause)
    finally:
        conn.close()


def _repeat(conn: http.client.HTTPConnection, path: str, reps: int, out: list[float]) -> None:
    for _ in range(reps):
        out.append(_get(conn, path))


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def client(port: int, reps: int, idle_s: float) -> dict[str, Any]:
    from probe_trace import Sleeper

    results: dict[str, Any] = {}
    sleeper = Sleeper()
    for phase, work in PHASES.items():
        sleeper.take()
        began = time.time()
        stop = threading.Event()
        probes: dict[str, list[float]] = {"/healthz": [], "/readyz": []}
        threads = [threading.Thread(target=_loop, args=(port, p, stop, out, 0.005)) for p, out in probes.items()]
        for t in threads:
            t.start()
        done: dict[str, list[float]] = {path: [] for path in work}
        if work:
            conns = {path: http.client.HTTPConnection("127.0.0.1", port, timeout=300) for path in work}

            workers = [threading.Thread(target=_repeat, args=(conns[p], p, reps, done[p])) for p in work]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            for c in conns.values():
                c.close()
        else:
            time.sleep(idle_s)
        stop.set()
        for t in threads:
            t.join()
        row: dict[str, Any] = {"began": began, "ended": time.time(), **sleeper.take()}
        for path, values in probes.items():
            name = path.strip("/")
            row |= {
                f"{name}_p50_ms": statistics.median(values) * 1000,
                f"{name}_p99_ms": _quantile(values, 0.99) * 1000,
                f"{name}_max_ms": max(values) * 1000,
                f"{name}_n": len(values),
            }
        for path, values in done.items():
            row["scrape_s" if path == "/metrics" else "report_s"] = statistics.median(values)
        results[phase] = row
    sleeper.stop()
    return results


# The gateway (this process).


async def fill_ledger(url: str, args: argparse.Namespace) -> None:
    from scale import fill

    from costwarden.storage.factory import open_store

    if url.startswith("postgresql://"):  # SQLite: main() removed the old file
        import asyncpg

        admin_url, db = url.rsplit("/", 1)
        admin = await asyncpg.connect(f"{admin_url}/test")
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            await admin.execute(f"CREATE DATABASE {db}")
        finally:
            await admin.close()
    store: Any = open_store(url)
    await store.open()
    try:
        args.rate = 0.0
        rate = await fill(store, args, time.time(), "ledger")
        print(f"filled {args.records:,} records: {rate['write_records_per_s']:,.0f} records/s", flush=True)
    finally:
        await store.close()


def serve(args: argparse.Namespace, folder: Path) -> tuple[Any, Any]:
    """The app and the server that `costwarden serve` runs for `--engine` (here without signals)."""
    from costwarden.app.asgi import CostwardenASGI
    from costwarden.app.fast_serve import BothServer, uvicorn_config
    from costwarden.config.models import Config

    cfg = Config.model_validate(
        {
            "server": {"host": "127.0.0.1", "port": args.port, "admin_token": TOKEN, "engine": args.engine},
            "storage": {"ledger": args.ledger, "spool_dir": str(folder / "spool")},
            "deployments": [{"name": "dep-00", "protocol": "openai", "upstream": "http://127.0.0.1:9/v1"}],
        }
    )
    app = CostwardenASGI(cfg, freeze_heap=True)  # as `costwarden serve` builds it
    config = uvicorn_config(app, cfg, "127.0.0.1", args.port, "warning")
    config.loop = "none"  # the bench's own uvloop
    if args.engine == "asgi":
        import uvicorn

        return app, uvicorn.Server(config)
    return app, BothServer(config, app, "127.0.0.1", args.port)


async def started(args: argparse.Namespace, folder: Path) -> tuple[Any, Any, asyncio.Task[None]]:
    """The app, its server and the task serving it, once the server has started."""
    app, server = serve(args, folder)
    # engine: fast with no admin port: uvicorn runs the lifespan and listens on nothing
    serving = asyncio.create_task(server.serve(None if args.engine == "asgi" else []))
    while not server.started:
        if serving.done():
            await serving
            raise SystemExit("the gateway did not start")
        await asyncio.sleep(0.05)
    return app, server, serving


async def fill_metrics(app: Any, teams: int, deployments: int) -> None:
    """One request for each team x deployment through the `Observe` stage, as traffic leaves them."""
    from scale_keys_metrics import observe_organisation

    await observe_organisation(app.runtime.metrics, teams, deployments, "dep")


async def gateway(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    from probe_trace import Trace

    app, server, serving = await started(args, folder)
    trace = Trace() if args.trace else None
    try:
        await fill_metrics(app, args.teams, args.deployments)
        if trace is not None:
            trace.start(app.gateway.local)
        argv = [sys.executable, __file__, "--client", str(args.port), "--reps", str(args.reps)]
        proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE)
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise SystemExit("the probing client failed")
        phases: dict[str, Any] = json.loads(out)
        if trace is not None:
            await trace.stop()
            for row in phases.values():
                row["trace"] = trace.summary(row["began"], row["ended"])
        return phases
    finally:
        server.should_exit = True
        await serving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ledger", default="")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--teams", type=int, default=500)
    parser.add_argument("--keys-per-team", type=int, default=20)
    parser.add_argument("--deployments", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--reps", type=int, default=5, help="scrapes and reports per phase")
    parser.add_argument("--port", type=int, default=18791)
    parser.add_argument("--dir", default="/tmp/costwarden-probes-bench")
    parser.add_argument("--reuse", action="store_true", help="keep the ledger of the last run")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "probes.json"))
    parser.add_argument("--engine", choices=("fast", "asgi"), default="fast", help="server.engine (default fast)")
    parser.add_argument("--trace", action="store_true", help="in-process monitors (bench/probe_trace.py)")
    parser.add_argument("--client", type=int, default=0, help=argparse.SUPPRESS)
    parser.set_defaults(rate=0.0, ahead=0.0)  # bench/scale.fill: records over 30 days, ending now
    args = parser.parse_args()
    if args.client:
        print(json.dumps(client(args.client, args.reps, idle_s=3.0)))
        return
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    args.ledger = args.ledger or f"sqlite:///{folder / 'ledger.db'}"
    if not args.reuse:
        if args.ledger.startswith("sqlite:///"):
            for suffix in ("", "-wal", "-shm"):
                Path(args.ledger.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
        asyncio.run(fill_ledger(args.ledger, args))
    import uvloop

    phases = uvloop.run(gateway(args, folder))
    for phase, row in phases.items():
        trace = row.pop("trace", None)
        print(phase, json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()
                                 if k not in ("began", "ended")}))  # fmt: skip
        if trace is not None:
            print("   trace", json.dumps(trace))
            row["trace"] = trace
    data = {"args": vars(args), "load": os.getloadavg(), "phases": phases}
    Path(args.out).write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
