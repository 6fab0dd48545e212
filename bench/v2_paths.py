"""The V2 binary-tensor path and the V2 gRPC path: through the gateway vs straight to the server.

    PYTHONPATH=src:. .venv/bin/python bench/v2_paths.py [--seconds 5] [--concurrency 8]

Starts MLServer 1.7.1 (the iris model; HTTP and gRPC ports), the small binary-extension V2 server
of the tests (MLServer refuses binary requests) and one gateway (the default engine, one worker,
SQLite ledger, gRPC listener on), all on loopback. For each path: sequential requests for latency (p50, p99),
then `--concurrency` clients for throughput (req/s), each for `--seconds`; the direct and the
gateway runs alternate, so both see the same load from the rest of the machine. Writes
bench/results/v2_paths.json and prints the markdown table of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

import aiohttp
import grpc
import numpy as np
import tritonclient.grpc.service_pb2 as pb
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from closed_loop import Results, Send, arguments, measure_rows, save  # noqa: E402
from tests.integration.procs import Gateway, MLServer, Proc, free_port, wait_until  # noqa: E402

KEY = "cw_bench_0123456789abcdefBENCHKEY"
ROWS = np.arange(8 * 4, dtype=np.float32).reshape(8, 4)  # 8 items of 4 FP32 features


def binary_request() -> tuple[bytes, dict[str, str]]:
    """What tritonclient sends by default: a JSON header, then the raw tensor bytes."""
    data = ROWS.tobytes()
    tensor = {"name": "input", "shape": [8, 4], "datatype": "FP32", "parameters": {"binary_data_size": len(data)}}
    header = json.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}}).encode()
    return header + data, {"Inference-Header-Content-Length": str(len(header))}


def grpc_request() -> bytes:
    tensor = pb.ModelInferRequest.InferInputTensor(name="predict", datatype="FP32", shape=[8, 4])
    request = pb.ModelInferRequest(model_name="iris", inputs=[tensor], raw_input_contents=[ROWS.tobytes()])
    raw: bytes = request.SerializeToString()
    return raw


def json_request() -> bytes:
    """The same tensor as V2 JSON: the path the gateway served before the binary extension."""
    tensor = {"name": "input", "shape": [8, 4], "datatype": "FP32", "data": ROWS.ravel().tolist()}
    return json.dumps({"inputs": [tensor]}).encode()


def config(tmp: Path, iris: MLServer, echo_url: str, grpc_port: int) -> Path:
    data = {
        "server": {"host": "127.0.0.1", "grpc_port": grpc_port},
        "storage": {"ledger": f"sqlite:///{tmp / 'ledger.db'}", "spool_dir": str(tmp / "spool")},
        "environments": ["prod"],
        "teams": [{"name": "bench", "projects": ["v2"]}],
        "deployments": [
            {"name": "iris", "protocol": "v2", "upstream": iris.url, "grpc_upstream": f"127.0.0.1:{iris.grpc_port}",
             "pricing": {"per_item": "0.00002"}},
            {"name": "echo", "protocol": "v2", "upstream": echo_url, "pricing": {"per_item": "0.00002"}},
        ],
        "keys": [{"id": "bench", "key": KEY, "team": "bench", "project": "v2", "environment": "prod"}],
    }  # fmt: skip
    path = tmp / "costwarden.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


async def run(args: argparse.Namespace, urls: dict[str, str]) -> Results:
    body, headers = binary_request()
    message = grpc_request()
    auth = {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        def http(url: str, extra: dict[str, str], content: bytes = body) -> Send:
            async def send() -> None:
                async with session.post(url, data=content, headers=extra) as response:
                    await response.read()
                    assert response.status == 200, response.status

            return send

        def rpc(address: str, metadata: tuple[tuple[str, str], ...]) -> tuple[grpc.aio.Channel, Send]:
            channel = grpc.aio.insecure_channel(address)
            call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer"
            )

            async def send() -> None:
                await call(message, metadata=metadata)

            return channel, send

        direct_channel, direct_rpc = rpc(urls["mlserver_grpc"], ())
        via_channel, via_rpc = rpc(urls["gateway_grpc"], (("authorization", f"Bearer {KEY}"),))
        targets = {
            "json/direct": http(urls["echo"] + "/v2/models/echo/infer", {}, json_request()),
            "json/gateway": http(urls["gateway"] + "/v2/models/echo/infer", auth, json_request()),
            "binary/direct": http(urls["echo"] + "/v2/models/echo/infer", headers),
            "binary/gateway": http(urls["gateway"] + "/v2/models/echo/infer", {**headers, **auth}),
            "grpc/direct": direct_rpc,
            "grpc/gateway": via_rpc,
        }
        results = await measure_rows(targets, args)
        await direct_channel.close()
        await via_channel.close()
    return results


def table(results: Results) -> str:
    lines = ["| path | direct p50 / p99 ms | via gateway p50 / p99 ms | added p50 ms | direct req/s | via req/s |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for path in ("json", "binary", "grpc"):
        d, g = results[f"{path}/direct"], results[f"{path}/gateway"]
        lines.append(
            f"| {path} | {d['p50_ms']:.2f} / {d['p99_ms']:.2f} | {g['p50_ms']:.2f} / {g['p99_ms']:.2f} "
            f"| {g['p50_ms'] - d['p50_ms']:.2f} | {d['req_s']:.0f} | {g['req_s']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    args = arguments(__doc__, seconds=5.0)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        mlserver = MLServer(tmp)
        echo_port, grpc_port = free_port(), free_port()
        echo = Proc([sys.executable, "-m", "tests.integration.v2_binary_upstream", str(echo_port)], tmp / "echo.log",
                    cwd=ROOT)  # fmt: skip
        gateway: Gateway | None = None
        try:
            mlserver.start()
            echo.start()
            echo_url = f"http://127.0.0.1:{echo_port}"
            import httpx

            wait_until(lambda: httpx.get(echo_url + "/v2/health/ready").status_code == 200, 30, "echo", echo.proc)
            gateway = Gateway(config(tmp, mlserver, echo_url, grpc_port), free_port(), tmp, "")
            gateway.start()
            urls = {
                "echo": echo_url,
                "gateway": gateway.url,
                "mlserver_grpc": f"127.0.0.1:{mlserver.grpc_port}",
                "gateway_grpc": f"127.0.0.1:{grpc_port}",
            }
            results = asyncio.run(run(args, urls))
        finally:
            for proc in (gateway, echo, mlserver):
                if proc is not None:
                    proc.stop()
    save("v2_paths", args, results)
    print(table(results))


if __name__ == "__main__":
    main()
