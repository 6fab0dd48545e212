"""ASGI apps served by bench/choices.py under uvicorn and under granian.

`hello`: the smallest honest app: reads the request body, answers a small JSON.
`passthrough_app`: a factory for the smallest Python reverse proxy on the same stack as the
gateway (uvicorn + uvloop + httptools, aiohttp to the upstream), with no metering: the floor
for any gateway written this way. Upstream from BENCH_UPSTREAM (e.g. http://127.0.0.1:19200).
`costwarden_app`: a factory for costwarden's own gateway, built from the config file named by
BENCH_COSTWARDEN_CONFIG (so both servers run the real hot path, lifespan included).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BODY = b'{"object":"hello","ok":true}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode())]


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})


def costwarden_app() -> ASGIApp:
    from costwarden.app.asgi import CostwardenASGI
    from costwarden.config import load_config

    return CostwardenASGI(load_config(Path(os.environ["BENCH_COSTWARDEN_CONFIG"])))


def passthrough_app() -> ASGIApp:
    import aiohttp

    upstream = os.environ["BENCH_UPSTREAM"].rstrip("/")
    state: dict[str, aiohttp.ClientSession] = {}
    hop = {b"connection", b"keep-alive", b"transfer-encoding", b"host", b"content-length"}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
                    state["session"] = aiohttp.ClientSession(
                        connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
                    )
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await state["session"].close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k not in hop}
        async with state["session"].request(
            scope["method"], upstream + scope["path"], data=b"".join(chunks), headers=headers
        ) as response:
            body = await response.read()
            out = [(k, v) for k, v in response.raw_headers if k.lower() not in hop]
            out.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": response.status, "headers": out})
            await send({"type": "http.response.body", "body": body})

    return app


class RsgiPassthrough:
    """`passthrough_app` on granian's RSGI interface (`granian --interface rsgi asgi_apps:rsgi_passthrough`):
    no ASGI events, the body and the response in one call each; aiohttp to the upstream."""

    _HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "host", "content-length"})

    def __init__(self) -> None:
        self._upstream = os.environ["BENCH_UPSTREAM"].rstrip("/")
        self._session: Any = None

    def __rsgi_init__(self, loop: Any) -> None:
        return None

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        import aiohttp

        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
            )
        body = await proto()
        headers = {k: v for k, v in scope.headers.items() if k not in self._HOP}
        async with self._session.request(scope.method, self._upstream + scope.path, data=body, headers=headers) as r:
            payload = await r.read()
            out = [(k, v) for k, v in r.headers.items() if k.lower() not in self._HOP]
            proto.response_bytes(r.status, out, payload)


rsgi_passthrough = RsgiPassthrough()
