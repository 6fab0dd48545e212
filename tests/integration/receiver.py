"""An aiohttp receiver on loopback for signed POSTs (webhook alerts, job callbacks), and a client
session: fixtures shared by the tests that deliver to HTTP peers (tests/integration/conftest.py)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from costwarden.alerts.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.integration.procs import free_port

SECRET = "a-shared-secret-of-some-length"


@dataclass
class Receiver:
    """An HTTP receiver on loopback: answers with `statuses` in turn (then 200), records requests."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    verify_signature: bool = False

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        self.requests.append((headers, body))
        if self.statuses:
            return web.Response(status=self.statuses.pop(0), text="busy")
        if self.verify_signature:
            timestamp, signature = headers.get(TIMESTAMP_HEADER, ""), headers.get(SIGNATURE_HEADER, "")
            if not verify(SECRET, timestamp, body, signature, now=time.time()):
                return web.Response(status=401, text="bad signature")
        return web.Response(text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    peer = Receiver()
    app = web.Application()
    app.router.add_post("/hook", peer.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    peer.url = f"http://127.0.0.1:{port}/hook"
    yield peer
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client
