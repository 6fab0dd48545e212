#!/usr/bin/env python
"""The hot path with the JSON access log on vs off, in the same run.

    .venv/bin/python bench/access_log.py [--requests 20000] [--reps 5]

Each repetition settles `--requests` requests through the real record stage (build the ledger
record, clamp it, hand it to the sink) in one event loop, once with the sink the gateway uses
without an access log and once with the access log beside it (writing to a temporary file, in
its background task and worker thread), alternating so both see the same machine. It reports
the wall time of the record stage on the event loop per request (what a request waits for) and
this process's CPU per request, the writer thread included (what the access log costs in all),
as medians of the repetitions.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from costwarden.chain.exchange import Exchange
from costwarden.chain.record import Record, RecordSink
from costwarden.config.observability import AccessLogConfig
from costwarden.domain.keys import KeyIdentity
from costwarden.domain.record import Protocol, UsageRecord
from costwarden.domain.usage import Usage
from costwarden.observability.access_log import AccessLog, LoggedSink

CHAT = "/v1/chat/completions"
IDENTITY = KeyIdentity("bench", "bench", "load", "prod")


class Ledger:
    """Stands in for the recorder's append (a list append: the spool write is the same either way)."""

    def __init__(self) -> None:
        self.records: list[UsageRecord] = []

    def append(self, record: UsageRecord, fitted: bool = False) -> None:
        self.records.append(record)


def exchange(i: int) -> Exchange:
    ex = Exchange(f"req-{i}", "POST", CHAT, b"", [], b'{"model":"m"}', Protocol.OPENAI, CHAT)
    ex.identity, ex.model, ex.status, ex.upstream_status = IDENTITY, "m", 200, 200
    ex.upstream_seconds, ex.usage, ex.cost = 0.012, Usage(input_tokens=120, output_tokens=16), Decimal("0.000084")
    return ex


async def one(requests: int, with_log: bool, folder: Path) -> tuple[float, float]:
    ledger = Ledger()
    access = AccessLog(AccessLogConfig(enabled=True, path=str(folder / "access.log"))) if with_log else None
    sink: RecordSink = ledger if access is None else LoggedSink(ledger, access)
    if access is not None:
        await access.start()
    stage = Record(sink)
    exchanges = [exchange(i) for i in range(requests)]
    gc.collect()
    cpu, wall = time.process_time(), 0.0
    for i, ex in enumerate(exchanges):
        began = time.perf_counter()
        await stage.settle(ex)
        wall += time.perf_counter() - began
        if i % 50 == 0:
            await asyncio.sleep(0)  # the loop turns, as between requests; the writer gets its turn
    if access is not None:
        await access.stop()  # the lines are written: their CPU is in the figure
        assert access.written == requests, (access.written, access.dropped)
    cpu = time.process_time() - cpu
    return wall / requests * 1e6, cpu / requests * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    results: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.reps):
            for with_log in (False, True):
                results[with_log].append(await one(args.requests, with_log, Path(folder)))
    print(f"{args.requests} requests x {args.reps} repetitions (medians)")
    print(f"{'':22}{'loop µs/req':>12}{'CPU µs/req':>12}")
    for with_log, label in ((False, "access log off"), (True, "access log on")):
        walls, cpus = zip(*results[with_log], strict=True)
        print(f"{label:22}{statistics.median(walls):12.1f}{statistics.median(cpus):12.1f}")
    off = statistics.median(c for _, c in results[False])
    on = statistics.median(c for _, c in results[True])
    print(f"access log adds {on - off:.1f} µs CPU per request ({on / off:.2f}x the record stage)")


if __name__ == "__main__":
    asyncio.run(main())
