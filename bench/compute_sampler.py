#!/usr/bin/env python
"""The request path with the compute sampler on vs off, in the same run.

    PYTHONPATH=src:bench .venv/bin/python bench/compute_sampler.py [--requests 20000] [--reps 5]

Each repetition settles `--requests` requests through the real record stage (as bench/access_log.py
does) in one event loop, once alone and once with the compute sampler running the `process`
collector on this process every 50 ms (20x the default rate) and storing its samples in a SQLite
ledger, alternating so both see the same machine. It reports the record stage's wall time on the
event loop per request (what a request waits for) and this process's CPU per request, the sampler's
thread and writes included, as medians. The sampler touches a request only through the GIL and the
event loop's turns: this measures exactly that.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path

from access_log import Ledger, exchange

from costwarden.chain.record import Record
from costwarden.collectors.process import ProcessCollector, ProcessFinder
from costwarden.services.compute import ComputeSampler
from costwarden.storage.factory import open_samples, open_store


async def one(requests: int, sampling: bool, folder: Path) -> tuple[float, float, int]:
    sampler = None
    if sampling:
        pid_file = folder / "self.pid"
        pid_file.write_text(str(os.getpid()))
        collector = ProcessCollector("bench", ProcessFinder(pid_file=str(pid_file)))
        sampler = ComputeSampler([(collector, 0.05)], open_samples(f"sqlite:///{folder / 'ledger.db'}"), 86400.0)
        await sampler.start()
    stage = Record(Ledger())
    exchanges = [exchange(i) for i in range(requests)]
    gc.collect()
    cpu, wall = time.process_time(), 0.0
    for i, ex in enumerate(exchanges):
        began = time.perf_counter()
        await stage.settle(ex)
        wall += time.perf_counter() - began
        if i % 50 == 0:
            await asyncio.sleep(0)  # the loop turns, as between requests; the sampler gets its turn
    taken = 0
    if sampler is not None:
        taken = sampler.statuses[0].samples
        await sampler.stop()
    cpu = time.process_time() - cpu
    return wall / requests * 1e6, cpu / requests * 1e6, taken


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    results: dict[bool, list[tuple[float, float, int]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as folder:
        ledger = open_store(f"sqlite:///{Path(folder) / 'ledger.db'}")
        await ledger.open()  # its migrations create the sample tables
        for _ in range(args.reps):
            for sampling in (False, True):
                results[sampling].append(await one(args.requests, sampling, Path(folder)))
        await ledger.close()
    print(f"{args.requests} requests x {args.reps} repetitions (medians)")
    print(f"{'':22}{'loop µs/req':>12}{'CPU µs/req':>12}{'samples':>9}")
    for sampling, label in ((False, "sampler off"), (True, "sampler on (50 ms)")):
        walls, cpus, taken = zip(*results[sampling], strict=True)
        print(f"{label:22}{statistics.median(walls):12.1f}{statistics.median(cpus):12.1f}{statistics.median(taken):9.0f}")


if __name__ == "__main__":
    asyncio.run(main())
