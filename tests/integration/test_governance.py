"""Budgets, rate limits and alerts enforced by one gateway with in-process state. What the data plane
enforces runs on both server engines (`on_engines`); the admin CLI and alerts test on the default one."""

from __future__ import annotations

import subprocess
import time
from decimal import Decimal
from typing import Any

import httpx

from costwarden.domain.record import Outcome
from tests.integration import ledger
from tests.integration.conftest import GatewayFactory
from tests.integration.procs import VENV_BIN, Gateway, wait_until
from tests.integration.setup_config import ADMIN_TOKEN, KEYS

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LIMIT = Decimal("0.002")


def chat(gateway: Gateway, team: str, max_tokens: int = 20, **kw: Any) -> httpx.Response:
    body = {"model": "chat", "messages": [{"role": "user", "content": "tell me a story"}], "max_tokens": max_tokens}
    return httpx.post(
        gateway.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEYS[team]}"}, timeout=30
    )


def governance(**sections: Any) -> dict[str, Any]:
    return {"governance": {"evaluate_every_seconds": 0.3, "spikes": {"enabled": False}, **sections}}


def test_a_block_budget_refuses_before_it_is_exceeded(on_engines: GatewayFactory) -> None:
    budget = {"id": "ads-daily", "scope": {"team": "ads"}, "window": "day", "limit_usd": str(LIMIT)}
    gateway = on_engines(extra=governance(budgets=[budget]))
    served, refused = 0, None
    for _ in range(200):
        response = chat(gateway, "ads")
        if response.status_code == 429:
            refused = response
            break
        assert response.status_code == 200, response.text
        served += 1
    assert refused is not None and served > 3
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "budget_exceeded")
    assert "'ads-daily'" in error["message"] and "resets at" in error["message"] and "day" in error["message"]
    assert int(refused.headers["retry-after"]) >= 1
    assert chat(gateway, "search").status_code == 200  # other teams are not in this budget's scope

    records = ledger.wait_for(gateway.ledger, served + 2)
    spent = sum((r.cost_usd for r in records if r.team == "ads"), Decimal(0))
    assert spent <= LIMIT  # every request bounds its output: the budget is never exceeded
    assert any(r.error_code == "budget_exceeded" and r.outcome is Outcome.REJECTED for r in records)

    view = httpx.get(gateway.admin_url + "/admin/v1/budgets", headers=ADMIN).json()[0]
    assert view["id"] == "ads-daily" and Decimal(view["spent_usd"]) == spent
    assert Decimal(view["remaining_usd"]) == LIMIT - spent


def test_rate_limit_per_key_with_openai_headers(on_engines: GatewayFactory) -> None:
    gateway = on_engines(extra=governance(rate_limits=[{"per": "key", "requests_per_minute": 5}]))
    responses = [chat(gateway, "ads", max_tokens=2) for _ in range(6)]
    assert [r.status_code for r in responses] == [200] * 5 + [429]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in responses[:5]] == ["4", "3", "2", "1", "0"]
    assert responses[0].headers["x-ratelimit-limit-requests"] == "5"
    assert responses[0].headers["x-ratelimit-reset-requests"].endswith("s")
    refused = responses[-1]
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(refused.headers["retry-after"]) >= 1
    assert chat(gateway, "search", max_tokens=2).status_code == 200  # counted per key


def test_budgets_admin_cli_and_alerts_reach_alertmanager(make_gateway: GatewayFactory, alertmanager: str) -> None:
    sinks = [{"type": "alertmanager", "url": alertmanager, "resend_interval_s": 1, "backoff_s": 0.05}]
    gateway = make_gateway(extra={**governance(), "alerts": sinks})
    url = gateway.url
    budget = {"scope": {"team": "search"}, "window": "month", "limit_usd": "0.0005", "thresholds": [50, 100]}
    created = httpx.put(url + "/admin/v1/budgets/search-monthly", json=budget, headers=ADMIN)
    assert created.status_code == 200, created.text
    assert created.json()["limit_usd"] == "0.000500000"
    bad = httpx.put(url + "/admin/v1/budgets/x", json={**budget, "scope": {"team": "nobody"}}, headers=ADMIN)
    assert bad.status_code == 400 and "unknown team" in bad.text

    while chat(gateway, "search", max_tokens=5).status_code == 200:
        pass

    def firing() -> list[dict[str, Any]]:
        params = {"active": "true", "filter": 'budget="search-monthly"'}
        found: list[dict[str, Any]] = httpx.get(alertmanager + "/api/v2/alerts", params=params).json()
        return found

    wait_until(lambda: any(a["labels"]["alertname"] == "budget_exhausted" for a in firing()), 20, "the alert")
    cli = [str(VENV_BIN / "costwarden")]
    listed = subprocess.run(
        [*cli, "budgets", "list", "-c", str(gateway.config_path)], capture_output=True, text=True, check=True
    )
    assert "search-monthly" in listed.stdout and "%" in listed.stdout
    alerts = httpx.get(url + "/admin/v1/alerts", params={"active": "true"}, headers=ADMIN).json()
    assert any(a["kind"] == "budget_exhausted" for a in alerts)

    # Raising the limit clears the condition: the alert resolves, in the ledger DB and in Alertmanager.
    raised = httpx.put(url + "/admin/v1/budgets/search-monthly", json={**budget, "limit_usd": "5"}, headers=ADMIN)
    assert raised.status_code == 200
    wait_until(lambda: not any(a["labels"]["alertname"] == "budget_exhausted" for a in firing()), 20, "resolution")
    resolved = httpx.get(url + "/admin/v1/alerts", headers=ADMIN).json()
    assert any(a["kind"] == "budget_exhausted" and a["resolved_at"] for a in resolved)
    shown = subprocess.run([*cli, "alerts", "-c", str(gateway.config_path)], capture_output=True, text=True, check=True)
    assert "budget_exhausted" in shown.stdout

    subprocess.run(
        [
            *cli,
            "budgets",
            "set",
            "cli-budget",
            "--limit-usd",
            "3",
            "--scope",
            "team=ads",
            "--window",
            "week",
            "-c",
            str(gateway.config_path),
        ],
        check=True,
        capture_output=True,
    )
    time.sleep(0.8)
    ids = [b["id"] for b in httpx.get(url + "/admin/v1/budgets", headers=ADMIN).json()]
    assert ids == ["cli-budget", "search-monthly"]  # stored budgets, by id
    assert httpx.delete(url + "/admin/v1/budgets/cli-budget", headers=ADMIN).status_code == 204
    remaining = [b["id"] for b in httpx.get(url + "/admin/v1/budgets", headers=ADMIN).json()]
    assert remaining == ["search-monthly"]


def _concurrent_slow(gateway: Gateway, n: int) -> list[httpx.Response]:
    import concurrent.futures

    body = {"model": "slow", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}

    def one(_: int) -> httpx.Response:
        headers = {"Authorization": f"Bearer {KEYS['ads']}"}
        return httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=headers, timeout=30)

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_concurrency_quota_rejects_or_queues(on_engines: GatewayFactory) -> None:
    rule = {"per": "deployment", "where": {"deployment": "slow"}, "max_concurrent": 1}
    rejecting = on_engines(extra=governance(concurrency=[rule]))
    statuses = sorted(r.status_code for r in _concurrent_slow(rejecting, 3))
    assert statuses == [429, 429, 504]  # one holds the slot until the upstream times out (0.5 s)
    queued_rule = {**rule, "on_limit": "wait", "max_waiting": 5, "wait_timeout_seconds": 5}
    queueing = on_engines(extra=governance(concurrency=[queued_rule]))
    started = time.monotonic()
    assert sorted(r.status_code for r in _concurrent_slow(queueing, 3)) == [504, 504, 504]
    assert time.monotonic() - started >= 1.4  # they went one at a time
    metrics = httpx.get(queueing.url + "/metrics").text
    assert 'costwarden_concurrency_active{quota="slot|deployment|slow"}' in metrics
