"""A rolling restart of all three replicas under traffic (issue 6): each is SIGTERMed and started
again in turn while clients keep sending. The block budget holds, no gateway answers 5xx, and the
counters come through three start-up rebuilds equal to the ledger (no refusal counted as a request,
no settlement lost)."""

from __future__ import annotations

import asyncio
import signal
import time
from decimal import Decimal
from typing import Any

from tests.conftest import drop_costwarden_tables
from tests.integration.budget_faults.fleet import Traffic, admitted, settle_down, spent, start_fleet, view
from tests.integration.conftest import GatewayFactory
from tests.integration.procs import wait_until
from tests.integration.redis_server import PrivateRedis

LIMIT = Decimal("0.04")  # team ads, blocking: about 300 requests of max_tokens 16


def _config(redis_url: str) -> dict[str, Any]:
    return {
        "state": redis_url,
        "governance": {
            "evaluate_every_seconds": 1,
            "spikes": {"enabled": False},
            "budgets": [
                {"id": "ads-day", "scope": {"team": "ads"}, "window": "day", "limit_usd": str(LIMIT)},
                # Never reached: its counters must equal the ledger after three start-up rebuilds.
                {
                    "id": "search-day",
                    "scope": {"team": "search"},
                    "window": "day",
                    "limit_usd": "100",
                    "limit_requests": 1_000_000,
                },
            ],
        },
    }


def test_a_rolling_restart_under_traffic_keeps_the_limit_and_answers_no_5xx(
    make_gateway: GatewayFactory, postgres_url: str, redis: PrivateRedis
) -> None:
    asyncio.run(drop_costwarden_tables(postgres_url))
    gateways = start_fleet(make_gateway, postgres_url, _config(redis.url))
    urls = [g.url for g in gateways]
    restarts: list[tuple[float, float]] = []
    with Traffic(urls, "ads", clients=8, pause=0.05) as ads, Traffic(urls, "search", clients=4, pause=0.05) as search:
        # Roll once the budget is a quarter spent, so that it runs out while replicas come and go.
        wait_until(lambda: Decimal(view(urls[0], "ads-day")["spent_usd"]) >= LIMIT / 4, 30, "a quarter of the budget")
        for gateway in gateways:
            began = time.monotonic()
            # Drained and stopped within its grace (uvicorn re-raises the SIGTERM it handled: -15).
            assert gateway.stop(signal.SIGTERM) in (0, -signal.SIGTERM), gateway.output()[-2000:]
            gateway.start()  # serves once it rebuilt its counters from the ledger
            restarts.append((began, time.monotonic()))
        wait_until(lambda: ads.tally.statuses[429] >= 20, 30, "the budget to run out")
    settle_down()

    served = ads.tally.statuses[200]
    assert ads.tally.errors == [] and search.tally.errors == [], (ads.tally.errors + search.tally.errors)[:5]
    assert set(ads.tally.statuses) <= {200, 429} and set(search.tally.statuses) == {200}, (ads.tally, search.tally)
    assert served > 0, ads.tally
    total = spent(postgres_url, "ads")
    # Every request bounds its output (max_tokens), so the in-flight estimate error is zero.
    assert total <= LIMIT, f"spent {total} of {LIMIT} through a rolling restart"
    assert total >= LIMIT * Decimal("0.9"), total  # and the budget was used, not refused early
    shown = view(urls[2], "search-day")
    assert Decimal(shown["spent_usd"]) == spent(postgres_url, "search"), shown
    assert shown["spent_requests"] == admitted(postgres_url, "search"), shown
    print(
        f"rolling restart: restarts took {[round(b - a, 1) for a, b in restarts]} s; ads spent {total} of {LIMIT}; "
        f"first 429 {ads.tally.first.get(429, 0) - restarts[0][0]:.1f} s after the roll began; "
        f"clients saw {dict(ads.tally.statuses)} (ads) {dict(search.tally.statuses)} (search), "
        f"{ads.tally.connection_errors + search.tally.connection_errors} connection errors retried"
    )
