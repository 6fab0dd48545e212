"""The lease holder SIGKILLed while an alert fires (issue 6), three replicas and the real
Alertmanager: the episode continues under the new leader (no second one, no gap in which
Alertmanager sees it end), resolves once, and the killed replica, started again, does not re-send it.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import httpx

from tests.conftest import drop_costwarden_tables
from tests.integration.budget_faults.fleet import ADMIN, Traffic, redis_command, start_fleet
from tests.integration.conftest import GatewayFactory
from tests.integration.procs import Gateway, wait_until
from tests.integration.redis_server import PrivateRedis

LEASE = "costwarden:governor-lease"
RESEND = 1.0  # Alertmanager re-send interval: a firing alert's endsAt lies a few of these ahead
LEASE_TTL = 4.0  # a dead leader is replaced this long after its last renewal (the default, 15 s, is for production)


def _config(redis_url: str, alertmanager: str) -> dict[str, Any]:
    return {
        "state": redis_url,
        "governance": {
            "evaluate_every_seconds": 0.5,
            "lease_ttl_seconds": LEASE_TTL,
            "spikes": {"enabled": False},
        },
        "alerts": [{"type": "alertmanager", "url": alertmanager, "resend_interval_s": RESEND, "backoff_s": 0.05}],
    }


def _budget(limit: str) -> dict[str, Any]:
    return {"scope": {"team": "ads"}, "window": "day", "limit_usd": limit}


def _in_alertmanager(alertmanager: str) -> list[dict[str, Any]]:
    """The active budget_exhausted alerts of ads-day that Alertmanager holds."""
    params = {"active": "true", "silenced": "false", "inhibited": "false", "filter": 'budget="ads-day"'}
    found: list[dict[str, Any]] = httpx.get(alertmanager + "/api/v2/alerts", params=params, timeout=5).json()
    return [a for a in found if a["labels"]["alertname"] == "budget_exhausted"]


def _episodes(url: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = httpx.get(url + "/admin/v1/alerts", headers=ADMIN, timeout=10).json()
    return [a for a in found if a["kind"] == "budget_exhausted"]


def _leader(redis_port: int, gateways: list[Gateway]) -> Gateway | None:
    holder = redis_command(redis_port, "GET", LEASE).decode()  # "$<n>\r\n<node>-<pid>-<hex>\r\n"
    for gateway in gateways:
        assert gateway.proc is not None
        if f"-{gateway.proc.pid}-" in holder:
            return gateway
    return None


def test_the_lease_holder_killed_while_an_alert_fires(
    make_gateway: GatewayFactory, postgres_url: str, redis: PrivateRedis, alertmanager: str
) -> None:
    asyncio.run(drop_costwarden_tables(postgres_url))
    gateways = start_fleet(make_gateway, postgres_url, _config(redis.url, alertmanager))
    urls = [g.url for g in gateways]
    # A stored budget, so that it can be raised at the end (the config file's cannot).
    put = httpx.put(urls[0] + "/admin/v1/budgets/ads-day", json=_budget("0.004"), headers=ADMIN, timeout=10)
    assert put.status_code == 200, put.text
    time.sleep(1.0)  # every replica loaded it
    with Traffic(urls, "ads", clients=4, pause=0.05) as ads:
        wait_until(lambda: len(_in_alertmanager(alertmanager)) == 1, 30, "the budget_exhausted alert")
        (episode,) = _episodes(urls[0])
        (shown,) = _in_alertmanager(alertmanager)
        leader = _leader(redis.port, gateways)
        assert leader is not None
        leader.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        survivors = [g for g in gateways if g is not leader]
        # Until another replica takes the lease (it expires LEASE_TTL after the last renewal), and after.
        gaps = 0
        while _leader(redis.port, survivors) is None:
            assert time.monotonic() - killed_at < LEASE_TTL + 15, "no replica took the lease over"
            gaps += len(_in_alertmanager(alertmanager)) != 1
            time.sleep(0.25)
        took_over = time.monotonic() - killed_at
        leader.start()  # the killed replica comes back; it does not lead
        for _ in range(int(4 * RESEND / 0.25)):
            gaps += len(_in_alertmanager(alertmanager)) != 1
            time.sleep(0.25)
    assert gaps == 0, f"Alertmanager lost the firing alert for {gaps} polls of 0.25 s during the failover"
    (shown_after,) = _in_alertmanager(alertmanager)
    assert shown_after["startsAt"] == shown["startsAt"], (shown, shown_after)  # one episode there too
    (still,) = _episodes(urls[0])  # the same episode, firing: not a second one
    assert still["id"] == episode["id"] and still["resolved_at"] is None, still
    assert _leader(redis.port, survivors) is not None  # the restarted replica did not take the lead

    # Raising the limit clears the condition: the new leader resolves the one episode, once.
    raised = httpx.put(urls[0] + "/admin/v1/budgets/ads-day", json=_budget("5"), headers=ADMIN, timeout=10)
    assert raised.status_code == 200, raised.text
    wait_until(lambda: _in_alertmanager(alertmanager) == [], 10, "Alertmanager to see the alert resolved")
    time.sleep(3 * RESEND)  # nobody re-sends it as firing: not the old leader's successor, not the restarted one
    assert _in_alertmanager(alertmanager) == []
    (done,) = _episodes(urls[2])
    assert done["id"] == episode["id"] and done["resolved_at"] is not None, done
    assert took_over >= LEASE_TTL - 1.0, f"the lease was taken over {took_over:.1f} s after the kill: before it expired"
    print(
        f"leader failover: lease taken over {took_over:.1f} s after the SIGKILL; one episode "
        f"{episode['id']}, resolved once; ads traffic saw {dict(ads.tally.statuses)}"
    )
