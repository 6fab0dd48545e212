"""The ASGI app behind the fast engine: a request the fast server parsed, served by an ASGI app.

With `engine: fast` and no `admin_port`, the paths that are not inference (the admin API,
dashboard, `/docs`, the Batch API) are answered on the main port by the same ASGI app as on the
asgi engine, in-process: `asgi_scope` is the request's HTTP scope as uvicorn would give it,
`Receive` its body as `http.request` events (then `http.disconnect` once the client leaves), `Send`
the app's answer to the connection (any status, every header as sent: cookies included; a body
without a Content-Length goes chunked and waits on a slow client; no body for HEAD).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from costwarden.app.fast_channel import FastChannel
from costwarden.app.fast_http import Message, Request
from costwarden.protocols.request_path import route_path

_ASGI = {"version": "3.0", "spec_version": "2.3"}


def asgi_scope(request: Request) -> dict[str, Any]:
    """The request's ASGI `http` scope: `raw_path` as sent, `path` decoded the gateway's way
    (protocols/request_path.py: as uvicorn does, but an encoded `/` stays in its segment)."""
    client, server = request.peer
    path = request.path
    return {
        "type": "http",
        "asgi": _ASGI,
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": route_path(path),
        "raw_path": path.encode("latin-1"),
        "query_string": request.query,
        "root_path": "",
        "headers": request.headers,
        "client": _address(client),
        "server": _address(server),
        "state": {},
    }


def _address(where: Any) -> tuple[str, int] | None:
    if isinstance(where, tuple) and len(where) >= 2:
        return str(where[0]), int(where[1])
    return None


class Receive:
    """ASGI `receive` over a fast request: its body, then (only) `http.disconnect` when the client leaves.

    As under uvicorn, a client leaving does not cancel the app: it learns it from `receive`, and
    what it still sends is dropped (`Send`)."""

    __slots__ = ("_done", "_request")

    def __init__(self, request: Request) -> None:
        request.cancellable = False
        self._request = request
        self._done = False

    async def __call__(self) -> Message:
        if self._done:  # the body is all read: an app listening on waits for the client to leave
            await self._request.wait_lost()
            return {"type": "http.disconnect"}
        message = await self._request.receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self._done = True
        return message


class Send:
    """ASGI `send` to a fast response channel (nothing more once the client of `request` has left)."""

    __slots__ = ("_channel", "_headers", "_request", "_status")

    def __init__(self, channel: FastChannel, request: Request | None = None) -> None:
        self._channel = channel
        self._request = request
        self._status = 500
        self._headers: list[tuple[bytes, bytes]] = []

    async def __call__(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self._status = message["status"]
            self._headers = [(bytes(k).lower(), bytes(v)) for k, v in message.get("headers", [])]
        elif message["type"] == "http.response.body" and not self._channel.finished:
            if self._request is not None and self._request.lost:
                return
            if not self._channel.started:
                await self._channel.start(self._status, self._headers)
            await self._channel.body(message.get("body", b""), message.get("more_body", False))
