"""The shared semantic index's own cost (src/costwarden/semantic/shared.py), without the model.

Against a real Redis (default 127.0.0.1:6379, a stream of its own, deleted after):

- **pull, nothing new**: what every semantic lookup adds when no other replica indexed anything
  since (one non-blocking XREAD; it runs while the prompt is embedded, ~16 ms on this VM, so it
  adds no latency unless it is slower than that);
- **pull, one new entry**: another replica indexed one prompt since the last lookup;
- **publish**: what a stored answer's indexing adds (one XADD of ~1.6 KB);
- **catch-up**: a replica that starts reads N entries (default 10,000, `semantic_max_entries`)
  into its index before it serves.

Vectors are random unit vectors of the model's 384 dimensions; times are medians over `--reps`.

    PYTHONPATH=src:. .venv/bin/python bench/semantic_shared.py --entries 10000 --reps 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import redis.asyncio as aioredis

from costwarden.semantic.index import SemanticIndex
from costwarden.semantic.shared import RedisIndexFeed

DIMENSIONS = 384


def vectors(n: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIMENSIONS)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


async def timed(step: Callable[[], Awaitable[object]], reps: int) -> float:
    """The median of `reps` runs of `step`, in microseconds."""
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        await step()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


async def main(url: str, entries: int, reps: int) -> dict[str, float]:
    stream = f"bench:{uuid.uuid4().hex[:12]}:semantic-index"
    writer = RedisIndexFeed(url, entries, stream=stream)
    reader = RedisIndexFeed(url, entries, stream=stream)
    rows = vectors(entries + reps)
    prompt = "What is the capital city of France? Please answer in one word."
    results: dict[str, float] = {}
    try:
        await reader.pull()
        results["pull, nothing new (us)"] = await timed(reader.pull, reps)
        counter = iter(range(reps))

        async def one_new() -> None:
            i = next(counter)
            await writer.publish("team/search|chat", f"k{i}", prompt, 300, rows[i])

        results["publish (us)"] = await timed(one_new, reps)
        await reader.pull()
        spent: list[float] = []
        for i in range(reps):  # another replica indexed one prompt since this one's last lookup
            await writer.publish("team/search|chat", f"p{i}", prompt, 300, rows[i])
            start = time.perf_counter()
            await reader.pull()
            spent.append(time.perf_counter() - start)
        results["pull, one new entry (us)"] = statistics.median(spent) * 1e6
        results |= await catch_up(url, stream, entries, rows, prompt)
    finally:
        client = aioredis.Redis.from_url(url)
        await client.delete(stream)
        await client.aclose()
        await writer.close()
        await reader.close()
    return results


async def catch_up(url: str, stream: str, entries: int, rows: np.ndarray, prompt: str) -> dict[str, float]:
    """A replica that starts: the stream holds `entries` entries; its first pull indexes them all."""
    results: dict[str, float] = {}
    client = aioredis.Redis.from_url(url)
    await client.delete(stream)
    for start in range(0, entries, 500):  # fill the stream in pipelines
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(entries, start + 500)):
            pipe.xadd(stream, {b"o": b"bench", b"s": f"scope{i % 20}".encode(), b"k": f"k{i}".encode(),
                               b"p": prompt.encode(), b"e": repr(time.time() + 300).encode(),
                               b"v": rows[i].tobytes()})  # fmt: skip
        await pipe.execute()
    await client.aclose()
    late = RedisIndexFeed(url, entries, stream=stream)
    index = SemanticIndex(0.95, entries)
    start = time.perf_counter()
    found = await late.pull()
    now = time.time()
    for e in found:
        index.add(e.scope, e.vector, e.prompt, e.key, e.expires_at - now)
    results[f"catch-up of {len(found)} entries (ms)"] = (time.perf_counter() - start) * 1e3
    await late.close()
    start = time.perf_counter()
    index.search("scope0", rows[0], prompt)
    results[f"first search over {len(index) // 20} entries of a scope (ms)"] = (time.perf_counter() - start) * 1e3
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("bench/results/semantic_shared.json"))
    args = parser.parse_args()
    measured = asyncio.run(main(args.url, args.entries, args.reps))
    for name, value in measured.items():
        print(f"{name:55s} {value:10.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"entries": args.entries, "reps": args.reps, "results": measured}, indent=2) + "\n")
