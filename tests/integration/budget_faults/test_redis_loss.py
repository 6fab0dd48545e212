"""Budgets through Redis faults (issue 6): a restart that keeps the data, a restart that loses it,
FLUSHALL. A private redis-server per test; the counter store is driven directly here, the gateways
in the scenarios below."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import aiohttp
import httpx
import pytest

from costwarden.domain.admission import AdmissionRequest, BudgetCheck, BudgetSeed
from costwarden.domain.budget import Amount
from costwarden.storage.redis_counters import RedisCounters
from tests.conftest import drop_costwarden_tables
from tests.integration import ledger
from tests.integration.conftest import GatewayFactory
from tests.integration.procs import Gateway
from tests.integration.redis_server import PrivateRedis
from tests.integration.setup_config import ADMIN_TOKEN, KEYS

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _check(budget_id: str, limit: str, now: float) -> BudgetCheck:
    key = f"{budget_id}|w"
    return BudgetCheck(budget_id, (key,), key, Decimal(limit), None, None, True, now + 3600, budget_id)


def _ask(rid: str, usd: str, check: BudgetCheck, now: float) -> AdmissionRequest:
    return AdmissionRequest(rid, Amount(Decimal(usd), 0, 1), now + 60, (check,))


async def test_the_first_admit_after_a_redis_restart_succeeds(durable_redis: PrivateRedis) -> None:
    """The pooled connections broke with the restart: one retry on a fresh connection, no error."""
    counters = RedisCounters(durable_redis.url, namespace=f"t{uuid.uuid4().hex[:8]}:")
    now = time.time()
    check = _check("b", "1", now)
    try:
        await counters.restore([BudgetSeed("b", ())])
        assert (await counters.admit(_ask("r1", "0.1", check, now), now)).admitted
        durable_redis.stop()
        durable_redis.start()
        result = await counters.admit(_ask("r2", "0.1", check, now), now)
        assert result.admitted
        assert result.budget_states[0].reserved.usd == Decimal("0.1")  # the data survived the restart
    finally:
        await counters.close()


# Three gateways, a private Redis and PostgreSQL: the limit holds while Redis loses its state.

BUDGET = Decimal("0.02")


def _config(redis_url: str) -> dict[str, Any]:
    return {
        "state": redis_url,
        "governance": {
            # A slow tick: a Redis restart between two ticks must be noticed by the request path.
            "evaluate_every_seconds": 5,
            "spikes": {"enabled": False},
            "budgets": [
                {"id": "ads-day", "scope": {"team": "ads"}, "window": "day", "limit_usd": str(BUDGET)},
                {
                    "id": "search-open",
                    "scope": {"team": "search"},
                    "window": "day",
                    "limit_usd": "100",
                    "fail_mode": "open",
                },
            ],
        },
    }


async def _traffic(urls: list[str], clients: int, per_client: int, seconds: float = 0.0) -> dict[int, int]:
    """Concurrent clients of team ads, round-robin over the gateways; status code counts. Each
    client sends `per_client` requests, and goes on until `seconds` have passed."""
    deadline = time.monotonic() + seconds
    counts: dict[int, int] = {}
    body = {"model": "chat", "messages": [{"role": "user", "content": "go on"}], "max_tokens": 16}
    headers = {"Authorization": f"Bearer {KEYS['ads']}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def client(i: int) -> None:
            j = 0
            while j < per_client or time.monotonic() < deadline:
                j += 1
                url = urls[(i + j) % len(urls)] + "/v1/chat/completions"
                async with session.post(url, json=body, headers=headers) as response:
                    await response.read()
                    counts[response.status] = counts.get(response.status, 0) + 1
                    if response.status == 503:
                        code = (await response.json())["error"]["code"]
                        assert code in ("state_store_rebuilding", "state_store_unreachable"), code
                    await asyncio.sleep(0.01)

        await asyncio.gather(*(client(i) for i in range(clients)))
    return counts


def _ads_spent(url: str) -> Decimal:
    return sum((r.cost_usd for r in ledger.records(url) if r.team == "ads"), Decimal(0))


def _view(url: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = httpx.get(url + "/admin/v1/budgets", headers=ADMIN, timeout=10).json()
    return next(b for b in found if b["id"] == "ads-day")


@pytest.mark.parametrize("loss", ["restart", "flushall", "down-2s-under-traffic"])
def test_an_exhausted_budget_stays_exhausted_when_redis_loses_its_state(
    make_gateway: GatewayFactory, postgres_url: str, redis: PrivateRedis, loss: str
) -> None:
    asyncio.run(drop_costwarden_tables(postgres_url))
    gateways: list[Gateway] = [
        make_gateway(ledger=postgres_url, extra=_config(redis.url), storage={"spool_dir": f"spool-{i}"})
        for i in range(3)
    ]
    urls = [g.url for g in gateways]
    first = asyncio.run(_traffic(urls, clients=30, per_client=8))
    assert first.get(429, 0) > 0, first
    time.sleep(1.0)  # flushed
    before = _ads_spent(postgres_url)
    assert BUDGET * Decimal("0.8") <= before <= BUDGET, before

    # Redis loses everything between two governor ticks, with traffic running.
    during: Future[dict[int, int]] | None = None
    if loss == "down-2s-under-traffic":  # down for 2 s while requests keep coming, back empty
        pool = ThreadPoolExecutor(1)
        during = pool.submit(asyncio.run, _traffic(urls, clients=10, per_client=1, seconds=4.0))
        time.sleep(0.5)
        redis.stop()
        time.sleep(2.0)
        redis.start()
        pool.shutdown(wait=False)
    elif loss == "restart":
        redis.stop()
        redis.start()
    else:
        with socket.create_connection(("127.0.0.1", redis.port), timeout=2) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            assert sock.recv(16).startswith(b"+OK")
    search = httpx.post(  # fail open: passes while its counters are unseeded
        urls[1] + "/v1/chat/completions",
        json={"model": "chat", "messages": [{"role": "user", "content": "x"}], "max_tokens": 4},
        headers={"Authorization": f"Bearer {KEYS['search']}"},
        timeout=10,
    )
    assert search.status_code == 200, search.text
    after = asyncio.run(_traffic(urls, clients=30, per_client=8))
    if during is not None:
        seen = during.result(timeout=60)
        assert seen.get(503, 0) > 0, seen  # the traffic did meet the outage
        assert seen.get(200, 0) <= 2 and set(seen) <= {200, 429, 503}, seen  # closed throughout
        after = {code: after.get(code, 0) + seen.get(code, 0) for code in set(after) | set(seen)}
    assert after.get(200, 0) <= 2 + (2 if during else 0), after  # only what the ledger's last flushes allow
    assert set(after) <= {200, 429, 503}, after
    time.sleep(1.0)
    spent = _ads_spent(postgres_url)
    assert spent <= BUDGET, f"spent {spent} of {BUDGET} after Redis lost its state"
    view = _view(urls[0])
    assert Decimal(view["spent_usd"]) >= spent, view  # rebuilt from the ledger, not from zero
    alerts = httpx.get(urls[0] + "/admin/v1/alerts", headers=ADMIN, timeout=10).json()
    exhausted = [a for a in alerts if a["kind"] == "budget_exhausted"]
    assert len(exhausted) <= 1 and all(a["resolved_at"] is None for a in exhausted), exhausted
