"""The counter store's circuit breaker against a real Redis that hangs (SIGSTOP): once the breaker
is open, admissions apply the fail mode at once instead of waiting for Redis's timeout, clients
of a fail-closed budget are told not to retry, and all recovers when Redis answers again."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import openai
import pytest

from tests.conftest import need
from tests.integration import ledger
from tests.integration.conftest import GatewayFactory
from tests.integration.procs import Gateway, wait_until
from tests.integration.redis_server import REDIS, PrivateRedis
from tests.integration.setup_config import KEYS

BODY = {"model": "chat", "messages": [{"role": "user", "content": "x"}], "max_tokens": 4}
SOCKET_TIMEOUT = 0.5  # RedisCounters' reply timeout: what each request waits without a breaker


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    need(REDIS is not None, "redis-server")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.send_signal(signal.SIGCONT)
    server.stop()


def breaker_config(redis_url: str) -> dict[str, Any]:
    return {
        "state": redis_url,
        "governance": {
            "evaluate_every_seconds": 0.25,
            "spikes": {"enabled": False},
            "breaker": {"failures": 3, "outage_seconds": 1.0, "open_seconds": 2.0},
            "budgets": [
                {"id": "search-open", "scope": {"team": "search"}, "limit_usd": "100", "fail_mode": "open"},
                {"id": "research-closed", "scope": {"team": "research"}, "limit_usd": "100", "fail_mode": "closed"},
            ],
        },
    }


async def _load(url: str, team: str, clients: int, seconds: float) -> list[tuple[float, float, int]]:
    """`clients` concurrent clients sending requests for `seconds`: (start, latency, status) each,
    the start relative to the call."""
    results: list[tuple[float, float, int]] = []
    headers = {"Authorization": f"Bearer {KEYS[team]}"}
    origin = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def client() -> None:
            while time.monotonic() - origin < seconds:
                started = time.monotonic()
                async with session.post(url + "/v1/chat/completions", json=BODY, headers=headers) as response:
                    await response.read()
                results.append((started - origin, time.monotonic() - started, response.status))

        await asyncio.gather(*(client() for _ in range(clients)))
    return results


def _breaker_state(gateway: Gateway) -> str:
    for line in httpx.get(gateway.url + "/metrics").text.splitlines():
        if line.startswith("costwarden_state_store_breaker_state{") and line.endswith(" 1.0"):
            return line.split('"')[1]
    raise AssertionError("no breaker state in /metrics")


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def test_a_hanging_redis_opens_the_breaker_and_admissions_stop_waiting(
    on_engines: GatewayFactory, private_redis: PrivateRedis
) -> None:
    """On both server engines (the control below on the default one)."""
    gateway = on_engines(extra=breaker_config(private_redis.url))
    warm = asyncio.run(_load(gateway.url, "search", clients=4, seconds=1.0))
    assert {status for _, _, status in warm} == {200}
    assert _breaker_state(gateway) == "closed"

    private_redis.send_signal(signal.SIGSTOP)  # Redis hangs: connections open, no replies
    outage = asyncio.run(_load(gateway.url, "search", clients=8, seconds=6.0))
    assert {status for _, _, status in outage} == {200}  # fail open: every request served
    first = [latency for start, latency, _ in outage if start < 0.5]
    later = [latency for start, latency, _ in outage if start >= 2.0]
    assert min(first) >= SOCKET_TIMEOUT * 0.9  # before it trips, requests wait for Redis's timeout
    assert len(later) >= 100, len(later)
    # Open, requests no longer wait; one half-open probe per cool-down still does (so p99, not max).
    assert statistics.median(later) < 0.05, statistics.median(later)
    assert _p99(later) < SOCKET_TIMEOUT / 2, _p99(later)
    assert _breaker_state(gateway) in ("open", "half_open")
    figures = {
        "before_trip_latency_min_s": round(min(first), 3),
        "open_requests": len(later),
        "open_median_s": round(statistics.median(later), 4),
        "open_p99_s": round(_p99(later), 4),
        "open_max_s": round(max(later), 3),
    }
    out = os.environ.get("COSTWARDEN_FIGURES")  # set by whoever refreshes docs/governance.md
    if out:
        Path(out).write_text(json.dumps(figures, indent=2))
    assert "costwarden_state_store_breaker_trips_total 1.0" in httpx.get(gateway.url + "/metrics").text

    # A fail-closed budget refuses at once, and the official SDK does not retry it.
    before = len(ledger.wait_for(gateway.ledger, len(warm) + len(outage), timeout=20))
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEYS["research"], timeout=10) as sdk:
        started = time.monotonic()
        with pytest.raises(openai.InternalServerError) as refused:
            sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}], max_tokens=4)
        elapsed = time.monotonic() - started
    assert refused.value.status_code == 503 and refused.value.response.headers["x-should-retry"] == "false"
    assert elapsed < SOCKET_TIMEOUT, elapsed
    records = ledger.wait_for(gateway.ledger, before + 1, timeout=10)
    time.sleep(1.0)  # a retry would have come within a second (Retry-After: 1)
    records = ledger.records(gateway.ledger)
    assert len(records) == before + 1, "the SDK retried a 503 that said x-should-retry: false"
    assert records[-1].status == 503 and records[-1].team == "research"

    # Redis answers again: the next probe closes the breaker and the closed budget admits again.
    private_redis.send_signal(signal.SIGCONT)
    wait_until(
        lambda: (
            httpx.post(
                gateway.url + "/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {KEYS['research']}"}
            ).status_code
            == 200
        ),
        10,
        "admission by Redis again",
    )
    assert _breaker_state(gateway) == "closed"


def test_without_the_breaker_every_admission_waits_for_the_timeout(
    make_gateway: GatewayFactory, private_redis: PrivateRedis
) -> None:
    """The control: what the breaker saves (the issue's p99 of 0.55 s while Redis hangs)."""
    config = breaker_config(private_redis.url)
    config["governance"]["breaker"] = {"enabled": False}
    gateway = make_gateway(extra=config)
    private_redis.send_signal(signal.SIGSTOP)
    outage = asyncio.run(_load(gateway.url, "search", clients=8, seconds=3.0))
    later = [latency for start, latency, _ in outage if start >= 1.0]
    assert {status for _, _, status in outage} == {200}
    assert statistics.median(later) >= SOCKET_TIMEOUT * 0.9
    assert "costwarden_state_store_breaker_state" not in httpx.get(gateway.url + "/metrics").text
