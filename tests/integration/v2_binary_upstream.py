"""A small V2 model server that speaks the binary tensor extension, which MLServer 1.7.1 refuses.

It serves one model, `echo`, that returns its first input as output `echo` (binary when the
request asks for binary outputs, as tritonclient does by default), the server and model metadata
and readiness, and reads gzip/deflate request bodies as Triton does (aiohttp decodes them). It remembers what it
received, so a test can check what crossed the gateway.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from aiohttp import web

from tests.integration.echo_upstream import Seen
from tests.integration.threaded_server import catch_all, serve_in_thread

MODEL = "echo"
_SIZES = {"FP32": 4, "FP64": 8, "INT32": 4, "INT64": 8, "UINT8": 1, "BOOL": 1}


class BinaryV2:
    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append(Seen.of(request, body))
        path = request.path.rstrip("/")
        if path == "/v2":
            return web.json_response({"name": "binary-v2", "version": "1", "extensions": ["binary_tensor_data"]})
        if path in (f"/v2/models/{MODEL}/ready", "/v2/health/ready"):
            return web.Response(status=200)
        if path == f"/v2/models/{MODEL}":
            tensor = {"name": "input", "datatype": "FP32", "shape": [-1, 4]}
            return web.json_response({"name": MODEL, "platform": "echo", "inputs": [tensor], "outputs": [tensor]})
        if path != f"/v2/models/{MODEL}/infer":
            return web.json_response({"error": f"no model at {path}"}, status=404)
        return self._infer(request, body)

    async def _handle_quietly(self, request: web.Request) -> web.Response:
        """As `_handle`, remembering nothing (a long benchmark would grow `seen` without end)."""
        response = await self._handle(request)
        self.seen.clear()
        return response

    def _infer(self, request: web.Request, body: bytes) -> web.Response:
        length = request.headers.get("Inference-Header-Content-Length")
        split = int(length) if length is not None else len(body)
        header: dict[str, Any] = orjson.loads(body[:split])
        tensor = header["inputs"][0]
        size = tensor.get("parameters", {}).get("binary_data_size")
        raw = body[split : split + size] if size is not None else None
        wants_binary = bool(header.get("parameters", {}).get("binary_data_output")) or any(
            o.get("parameters", {}).get("binary_data") for o in header.get("outputs", [])
        )
        output: dict[str, Any] = {"name": "echo", "datatype": tensor["datatype"], "shape": tensor["shape"]}
        if raw is None and wants_binary:
            raw = _pack(tensor)
        if wants_binary and raw is not None:
            output["parameters"] = {"binary_data_size": len(raw)}
            reply = orjson.dumps({"model_name": MODEL, "outputs": [output]})
            return web.Response(
                body=reply + raw,
                content_type="application/octet-stream",
                headers={"Inference-Header-Content-Length": str(len(reply))},
            )
        output["data"] = tensor["data"] if raw is None else _unpack(raw, tensor["datatype"])
        return web.json_response({"model_name": MODEL, "outputs": [output]})


def _pack(tensor: dict[str, Any]) -> bytes:
    import struct

    data = tensor["data"]
    return struct.pack(f"<{len(data)}{'f' if tensor['datatype'] == 'FP32' else 'q'}", *data)


def _unpack(raw: bytes, datatype: str) -> list[float]:
    import struct

    width = _SIZES[datatype]
    return list(struct.unpack(f"<{len(raw) // width}{'f' if datatype == 'FP32' else 'q'}", raw))


@contextmanager
def binary_v2_upstream() -> Iterator[BinaryV2]:
    """Serve a BinaryV2 on a free loopback port, in a thread with its own event loop."""
    server = BinaryV2()
    with serve_in_thread(server._handle) as server.url:
        yield server


def main() -> None:
    """`python -m tests.integration.v2_binary_upstream PORT`: serve until stopped (the benchmark's upstream)."""
    import sys

    server = BinaryV2()
    app = catch_all(server._handle_quietly)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
