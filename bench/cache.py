"""What a response cache hit costs vs a forwarded request: through the gateway, on loopback.

    PYTHONPATH=src:. .venv/bin/python bench/cache.py [--seconds 3] [--repeat 3] [--concurrency 8]

Starts the bundled text model (examples/textmodel, the OpenAI-compatible upstream of the tests) and
one gateway (one uvicorn worker, SQLite ledger, in-memory cache) with two deployments on it: `plain`
(no cache: every request is forwarded) and `cached` (its one request body is cached once, then every
request is a hit). Rows: straight to the text model, forwarded by the gateway, a miss on `cached`
(every body new: the lookup, the copy of the answer and the store added to a forward), a hit, and
a hit served to a streaming client, and a semantic hit (a paraphrase of a cached prompt on a
deployment with `cache.semantic: true`: an exact miss, one embedding on the CPU, the index search;
only with the `semantic` extra installed). Per row: sequential requests for `--seconds` (latency p50/p99), then
`--concurrency` clients for `--seconds` (req/s); the rows alternate within each repetition, so all
see the same load from the rest of the machine; medians of the repetitions. Writes
bench/results/cache.json and prints the markdown table of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import itertools
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from closed_loop import Results, Send, arguments, measure_rows, save  # noqa: E402
from tests.integration.procs import Gateway, TextModel, free_port  # noqa: E402

KEY = "cw_bench_0123456789abcdefBENCHKEY"
PRICES = {"input_per_1m": "0.50", "output_per_1m": "1.50"}
ROWS = ("direct", "forwarded", "miss", "hit", "hit, streamed", "semantic hit")
SEMANTIC = importlib.util.find_spec("sentence_transformers") is not None


def body(model: str, stream: bool = False, content: str = "the quick brown fox") -> bytes:
    request = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 16,
               "temperature": 0, "stream": stream}  # fmt: skip
    return json.dumps(request).encode()


def config(tmp: Path, upstream: str) -> Path:
    data = {
        "server": {"host": "127.0.0.1"},
        "storage": {"ledger": f"sqlite:///{tmp / 'ledger.db'}", "spool_dir": str(tmp / "spool")},
        "environments": ["prod"],
        "teams": [{"name": "bench", "projects": ["cache"]}],
        "cache": {"enabled": True, "ttl_seconds": 3600},
        "deployments": [
            {"name": "plain", "protocol": "openai", "upstream": upstream, "model": "markov-small",
             "pricing": PRICES, "cache": {"enabled": False}},
            {"name": "cached", "protocol": "openai", "upstream": upstream, "model": "markov-small", "pricing": PRICES},
        ] + ([{"name": "similar", "protocol": "openai", "upstream": upstream, "model": "markov-small",
               "pricing": PRICES, "cache": {"semantic": True}}] if SEMANTIC else []),
        "keys": [{"id": "bench", "key": KEY, "team": "bench", "project": "cache", "environment": "prod"}],
    }  # fmt: skip
    path = tmp / "costwarden.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


async def run(args: argparse.Namespace, upstream: str, gateway: str) -> Results:
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    fresh = (f"the quick brown fox {i}" for i in itertools.count())
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        def post(url: str, content: bytes | Callable[[], bytes], expect_cache: str | None) -> Send:
            async def send() -> None:
                data = content if isinstance(content, bytes) else content()
                async with session.post(url, data=data, headers=auth) as response:
                    await response.read()
                    assert response.status == 200, response.status
                    assert response.headers.get("x-costwarden-cache") == expect_cache

            return send

        targets = {
            "direct": post(upstream + "/v1/chat/completions", body("markov-small"), None),
            "forwarded": post(gateway + "/v1/chat/completions", body("plain"), None),
            "miss": post(gateway + "/v1/chat/completions", lambda: body("cached", content=next(fresh)), "miss"),
            "hit": post(gateway + "/v1/chat/completions", body("cached"), "hit"),
            "hit, streamed": post(gateway + "/v1/chat/completions", body("cached", stream=True), "hit"),
        }
        await post(gateway + "/v1/chat/completions", body("cached"), "miss")()  # the one miss: stored
        if SEMANTIC:
            asked = body("similar", content="What is the capital city of France?")
            await post(gateway + "/v1/chat/completions", asked, "miss")()
            paraphrase = body("similar", content="Which city is the capital of France?")
            targets["semantic hit"] = post(gateway + "/v1/chat/completions", paraphrase, "hit")
        return await measure_rows(targets, args)


def table(results: Results) -> str:
    base = results["forwarded"]["p50_ms"]
    lines = ["| row | p50 ms | p99 ms | p50 vs forwarded | req/s |", "| --- | ---: | ---: | ---: | ---: |"]
    for name in ROWS:
        if name not in results:
            continue
        r = results[name]
        versus = "" if name in ("direct", "forwarded") else f"{r['p50_ms'] - base:+.2f} ms ({r['p50_ms'] / base:.2f}x)"
        lines.append(f"| {name} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {versus} | {r['req_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    args = arguments(__doc__, seconds=3.0)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        textmodel = TextModel(tmp)
        gateway: Gateway | None = None
        try:
            textmodel.start()
            gateway = Gateway(config(tmp, textmodel.url), free_port(), tmp, "")
            gateway.start()
            results = asyncio.run(run(args, textmodel.url, gateway.url))
        finally:
            for proc in (gateway, textmodel):
                if proc is not None:
                    proc.stop()
    save("cache", args, results)
    print(table(results))


if __name__ == "__main__":
    main()
