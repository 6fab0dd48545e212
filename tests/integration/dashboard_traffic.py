"""A gateway with budgets and real traffic of three teams, for the dashboard tests; the ledger's own
totals, read independently of the dashboard (tests/integration/ledger.py)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import httpx

from tests.integration import ledger
from tests.integration.conftest import GatewayFactory
from tests.integration.procs import Gateway, wait_until
from tests.integration.setup_config import ADMIN_TOKEN, KEYS

BUDGETS = [
    # 5 %: crossed by the traffic below (about 8 %), so an alert fires with a link to this budget
    {
        "id": "search-daily",
        "scope": {"team": "search"},
        "window": "day",
        "limit_usd": "0.01",
        "action": "block",
        "thresholds": [5],
    },
    {"id": "all-monthly", "window": "month", "limit_usd": "5", "action": "alert_only"},
]
EXTRA = {"governance": {"evaluate_every_seconds": 0.5, "spikes": {"enabled": False}, "budgets": BUDGETS}}


def dashboard_gateway(make_gateway: GatewayFactory) -> Gateway:
    """A gateway with 14 chat requests of three teams and one malformed one in its ledger."""
    gateway = make_gateway(extra=EXTRA)
    with httpx.Client(timeout=30) as client:
        for i in range(14):
            team = ("search", "ads", "research", "search")[i % 4]
            body = {"model": "chat", "messages": [{"role": "user", "content": f"q{i}"}], "max_tokens": 2 + i}
            reply = client.post(gateway.url + "/v1/chat/completions", json=body, headers=auth(KEYS[team]))
            assert reply.status_code == 200, reply.text
        client.post(gateway.url + "/v1/chat/completions", content=b"{", headers=auth(KEYS["ads"]))
    ledger.wait_for(gateway.ledger, 15)
    wait_until(lambda: bool(_firing(gateway)), 20, "the search-daily threshold alert")
    return gateway


def _firing(gateway: Gateway) -> list[dict[str, Any]]:
    reply = httpx.get(gateway.url + "/admin/v1/alerts", params={"active": "true"}, headers=auth(ADMIN_TOKEN))
    found: list[dict[str, Any]] = reply.json()
    return found


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def ledger_spend(gateway: Gateway, by: str) -> dict[str | None, Decimal]:
    """Cost per value of `by`, summed from the raw records."""
    totals: dict[str | None, Decimal] = defaultdict(Decimal)
    for record in ledger.records(gateway.ledger):
        totals[getattr(record, by)] += record.cost_usd
    return dict(totals)


@contextmanager
def sign_in(gateway: Gateway, token: str = ADMIN_TOKEN) -> Iterator[httpx.Client]:
    """An httpx client holding a dashboard session."""
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        reply = client.post("/dashboard/login", data={"token": token})
        assert reply.status_code == 303, reply.text
        yield client


def rows_by(body: dict[str, Any], by: str) -> dict[str | None, Decimal]:
    return {row[by]: Decimal(row["cost_usd"]) for row in body["rows"]}
