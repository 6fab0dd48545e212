#!/usr/bin/env python
"""Two pieces of issue 14 item 2 in process, for comparing trees (PYTHONPATH=<tree>/src):

* `/metrics` at 500 teams x 20 deployments (bench/scale_keys_metrics.observe_organisation): CPU
  seconds of a render through `Exposition.render` (median of `--reps`) and the collections that
  ran during one (the objects a render keeps alive while it runs);
* the spike watch's state for `--series` series after a week of 5-minute windows (every hour of the
  week learned): the tracked objects it leaves and the CPU of a full collection walking them.

    PYTHONPATH=src:bench .venv/bin/python bench/probe_heap.py --out bench/results/probes14/heap_after.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))


async def render(reps: int) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry
    from scale_keys_metrics import observe_organisation

    from costwarden.observability.exposition import Exposition
    from costwarden.observability.metrics import GatewayMetrics

    registry = CollectorRegistry()
    await observe_organisation(GatewayMetrics(registry), 500, 20, "deployment")
    exposition = Exposition(registry)
    body = await exposition.render()
    cpus = []
    for _ in range(reps):
        began = time.process_time()
        await exposition.render()
        cpus.append(time.process_time() - began)
    gc.collect()
    counts = [g["collections"] for g in gc.get_stats()]
    await exposition.render()
    ran = [g["collections"] - before for g, before in zip(gc.get_stats(), counts, strict=True)]
    return {
        "bytes": len(body),
        "render_cpu_ms": round(statistics.median(cpus) * 1000, 1),
        "collections_in_a_render": {f"gen{g}": n for g, n in enumerate(ran)},
    }


def spikes(series: int, reps: int) -> dict[str, Any]:
    from costwarden.domain.spike import SeriesState, SpikeDetector, observe

    detector = SpikeDetector()
    monday = 1_749_427_200.0
    states = {}
    for k in range(series):
        state = SeriesState()
        for hour in range(168):  # one window an hour for a week: every slot learned
            start = monday + hour * 3600.0
            state, _ = observe(detector, state, 10.0 + hour % 5, start, start + detector.window_seconds)
        states[k] = state
    gc.collect()
    gc.collect()
    tracked = len(gc.get_objects())
    cpus = []
    for _ in range(reps):
        began = time.thread_time()
        gc.collect()
        cpus.append(time.thread_time() - began)
    del states
    gc.collect()
    return {
        "series": series,
        "tracked_with_them": tracked,
        "tracked_without": len(gc.get_objects()),
        "full_collection_cpu_ms": round(statistics.median(cpus) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--series", type=int, default=1040, help="500 teams + 20 deployments, 2 measures each")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    out = {"metrics": asyncio.run(render(args.reps)), "spikes": spikes(args.series, args.reps)}
    out["load"] = list(os.getloadavg())
    print(json.dumps(out))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
