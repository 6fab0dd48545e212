"""What taking the request as a stream costs the gRPC listener (app/grpc_server.py, issue 12).

    PYTHONPATH=src:. .venv/bin/python bench/grpc_handler.py [--calls 3000] [--repeat 7]

The listener's handler is request-streaming so that it runs, and records, even for a message gRPC
refuses unread (over its receive limit). This measures that choice alone: two in-process
grpc.aio servers with the same generic handler answering a 1 KiB message with itself, one
unary-unary (before) and one stream-unary taking the single message (after), called by one unary
client, sequentially (`--calls` per repetition); the two alternate, repetition by repetition.
Prints the medians of per-call microseconds and their ratio; writes bench/results/grpc_handler.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]
MESSAGE = bytes(1024)


class Echo(grpc.GenericRpcHandler):
    def __init__(self, streaming: bool) -> None:
        self._streaming = streaming

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes]:
        if self._streaming:

            async def taken(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
                first = b""
                async for message in requests:
                    first = message
                return first

            return grpc.stream_unary_rpc_method_handler(taken)

        async def unary(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            return request

        return grpc.unary_unary_rpc_method_handler(unary)


async def per_call_us(port: int, calls: int) -> float:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/bench.Echo/Call")
        for _ in range(50):  # warm
            await call(MESSAGE)
        started = time.perf_counter()
        for _ in range(calls):
            await call(MESSAGE)
        return (time.perf_counter() - started) / calls * 1e6


async def run(calls: int, repeat: int) -> dict[str, list[float]]:
    servers, ports = [], {}
    for name, streaming in (("unary", False), ("stream", True)):
        server = grpc.aio.server()
        server.add_generic_rpc_handlers([Echo(streaming)])
        ports[name] = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
    times: dict[str, list[float]] = {"unary": [], "stream": []}
    try:
        for _ in range(repeat):
            for name in ("unary", "stream"):
                times[name].append(await per_call_us(ports[name], calls))
    finally:
        for server in servers:
            await server.stop(0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    times = asyncio.run(run(args.calls, args.repeat))
    unary, stream = statistics.median(times["unary"]), statistics.median(times["stream"])
    ratios = statistics.median(s / u for u, s in zip(times["unary"], times["stream"], strict=True))
    out = ROOT / "bench" / "results" / "grpc_handler.json"
    out.write_text(json.dumps({"args": vars(args), "us_per_call": times}, indent=2) + "\n")
    print(f"| handler | median µs per call |\n| --- | ---: |\n| unary-unary (before) | {unary:.0f} |")
    print(f"| stream-unary (after) | {stream:.0f} |\n\nmedian ratio after / before: {ratios:.3f}")


if __name__ == "__main__":
    main()
