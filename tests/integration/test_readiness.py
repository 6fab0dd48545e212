"""`/readyz` answers from a readiness state a background ping keeps fresh: no database round trip
per probe (a probe answers while reports hold the database, issue 14), and a ledger database that
refuses, or stops answering, still turns it not-ready within `STALE_AFTER_S` (real PostgreSQL
behind a TCP relay that plays the outage)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from costwarden.app.asgi import CostwardenASGI
from costwarden.config.models import Config
from costwarden.services.readiness import PING_EVERY_S, STALE_AFTER_S
from tests.conftest import scratch_database
from tests.contract.test_counters import Relay


@contextlib.asynccontextmanager
async def gateway(ledger: str, spool: Path) -> AsyncIterator[CostwardenASGI]:
    config = Config.model_validate(
        {
            "storage": {"ledger": ledger, "spool_dir": str(spool)},
            "deployments": [{"name": "chat", "protocol": "openai", "upstream": "http://127.0.0.1:9/v1"}],
        }
    )
    switch = sys.getswitchinterval()
    app = CostwardenASGI(config)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
    lifespan = asyncio.create_task(app({"type": "lifespan"}, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    try:
        yield app
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await lifespan
        sys.setswitchinterval(switch)


async def readyz(app: CostwardenASGI) -> tuple[int, dict[str, Any]]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        reply = await client.get("/readyz")
    return reply.status_code, orjson.loads(reply.content)


async def test_readyz_makes_no_database_round_trip_per_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with gateway(f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path / "spool") as app:
        store = app.runtime.store
        pings = 0
        ping = store.ping

        async def counted() -> bool:
            nonlocal pings
            pings += 1
            return await ping()

        monkeypatch.setattr(store, "ping", counted)
        started = time.monotonic()
        for _ in range(50):
            assert (await readyz(app))[0] == 200
        # the background check pings once a second, whatever the number of probes
        assert pings <= 1 + (time.monotonic() - started) / PING_EVERY_S


async def wait_for(app: CostwardenASGI, status: int, within_s: float) -> float:
    """Seconds until /readyz answers `status`; fails past `within_s` (a probe left hanging too)."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(within_s):
            while True:
                answered, _ = await readyz(app)
                if answered == status:
                    break
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"/readyz did not answer {status} within {within_s:g} s")
    return time.monotonic() - started


async def test_a_ledger_database_that_refuses_or_hangs_turns_readyz_not_ready_in_time(tmp_path: Path) -> None:
    with scratch_database("costwarden_readiness") as url:
        relay = Relay(upstream_port=5432)
        await relay.start()
        ledger = url.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}")
        async with gateway(ledger, tmp_path / "spool") as app:
            try:
                assert (await readyz(app))[0] == 200
                # refused: the relay is down, so each ping fails at once
                await relay.stop()
                await wait_for(app, 503, PING_EVERY_S + 2.0)
                status, checks = await readyz(app)
                assert (status, checks["ledger"]) == (503, False)
                assert "has not answered a ping" in str(checks["reason"])
                await relay.start()
                await wait_for(app, 200, PING_EVERY_S + 5.0)
                # silent: connections are accepted and never answered, so pings hang
                await relay.stop()
                await relay.start(silent=True)
                await wait_for(app, 503, STALE_AFTER_S + PING_EVERY_S + 2.0)
                await relay.stop()
                await relay.start()
                await wait_for(app, 200, STALE_AFTER_S + PING_EVERY_S + 5.0)
            finally:
                await relay.stop()
