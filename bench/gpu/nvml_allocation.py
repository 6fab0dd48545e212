#!/usr/bin/env python
"""On a GPU host: the `nvml` collector against two real model processes sharing GPU 0, then the
allocation of the GPU's cost between them. Prepared for a GPU machine; it has not been run in CI.

    PYTHONPATH=src python bench/gpu/nvml_allocation.py [--seconds 30] [--hourly-usd 3.72]

Needs PyTorch with CUDA and nvidia-ml-py (`pip install 'costwarden[compute]' torch`). Starts two
worker processes (A: a larger encoder at 20 req/s, B: a smaller one at 8 req/s, Poisson arrivals),
each timing its requests with torch.cuda.synchronize(); samples NVML every 100 ms through
`NvmlCollector` (the gateway's own collector); prints the samples' summary, each process's GPU memory
and SM share as NVML saw them, and the allocation by model: from request intervals, and from the
GPU's measured utilisation shared in the intervals' proportions. The identity is checked exactly.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import time
from decimal import Decimal
from pathlib import Path

from costwarden.collectors.nvml import NvmlCollector
from costwarden.domain.allocation import allocate
from costwarden.domain.allocation_input import IntervalGatherer, Provision
from costwarden.domain.compute_sample import GpuSample, gpu_busy
from costwarden.domain.hardware import HardwareProfile


def worker(name: str, d_model: int, layers: int, rate: float, seconds: float, out: str) -> None:
    import torch

    layer = torch.nn.TransformerEncoderLayer(d_model, 16, batch_first=True)
    model = torch.nn.TransformerEncoder(layer, layers).half().cuda().eval()
    rng = random.Random(name)
    lines = []
    deadline = time.time() + seconds
    with torch.no_grad():
        while time.time() < deadline:
            time.sleep(rng.expovariate(rate))
            x = torch.randn(rng.randint(1, 32), rng.choice([64, 128, 256, 512]), d_model, device="cuda").half()
            start = time.time()
            model(x)
            torch.cuda.synchronize()
            lines.append({"model": name, "start": start, "end": time.time(), "pid": mp.current_process().pid})
    Path(out).write_text("\n".join(json.dumps(line) for line in lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--hourly-usd", default="3.72")
    args = parser.parse_args()
    collector = NvmlCollector()
    if not collector.start():
        raise SystemExit(collector.status.last_error)
    ctx = mp.get_context("spawn")
    outs = {"A": "/tmp/nvml_alloc_A.jsonl", "B": "/tmp/nvml_alloc_B.jsonl"}
    procs = [
        ctx.Process(target=worker, args=("A", 2048, 8, 20.0, args.seconds, outs["A"])),
        ctx.Process(target=worker, args=("B", 1024, 4, 8.0, args.seconds, outs["B"])),
    ]
    for p in procs:
        p.start()
    samples: list[GpuSample] = []
    window_start = time.time()
    while any(p.is_alive() for p in procs):
        samples += [s for s in collector.sample(time.time()) if s.gpu == 0]
        time.sleep(0.1)
    window_end = time.time()
    collector.stop()
    pids = {p.pid: name for p, name in zip(procs, "AB", strict=True)}
    print(f"{len(samples)} NVML samples over {window_end - window_start:.1f} s")
    for pid, name in pids.items():
        memory = max((q.memory_bytes for s in samples for q in s.processes if q.pid == pid), default=0)
        sm = [q.sm_pct for s in samples for q in s.processes if q.pid == pid and q.sm_pct is not None]
        print(f"  {name} (pid {pid}): peak GPU memory {memory / 2**20:.0f} MiB, SM samples {len(sm)}")
    measured = gpu_busy(samples, window_start, window_end, max_gap=1.0)
    covered = f"{measured.covered_seconds:.2f} s covered, gaps {measured.gaps}"
    print(f"  device busy {measured.busy_seconds:.2f} s of {covered}")
    profile = HardwareProfile("gpu0", Decimal(args.hourly_usd), "GPU", 1)
    ways: list[tuple[str, tuple[float, str] | None]] = [
        ("request intervals", None),
        ("nvml utilisation", (measured.busy_seconds, "nvml")),
    ]
    for label, seen in ways:
        gatherer = IntervalGatherer(window_start, window_end, ("model",), {"gpu0": Provision(profile, 1)})
        for name, path in outs.items():
            for line in Path(path).read_text().splitlines():
                req = json.loads(line)
                gatherer.add_interval("gpu0", req["start"], req["end"], (name,), 0)
        result = allocate(gatherer.usages({"gpu0": seen} if seen else None), 1, "separate")
        print(f"allocation from {label}: provisioned ${result.provisioned_usd}, efficiency {result.efficiency:.1%}")
        for row in result.rows:
            print(f"  {row.group[0]:>9}  {row.requests:5d} req  busy {row.busy_seconds:7.3f} s  ${row.total_usd}")
        assert sum((r.total_usd for r in result.rows), Decimal(0)) == result.provisioned_usd


if __name__ == "__main__":
    main()
