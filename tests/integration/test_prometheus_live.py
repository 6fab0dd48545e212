"""A real Prometheus scrapes a gateway with traffic and evaluates `costwarden export prometheus-rules`:
the recorded spend per team equals the ledger's; every exposed metric is documented in docs/metrics.md."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from costwarden.observability.grafana import build_dashboard, panel_queries
from costwarden.observability.rules import rules_yaml
from tests.integration.conftest import GatewayFactory
from tests.integration.procs import Gateway
from tests.integration.prometheus_server import Prometheus
from tests.integration.setup_config import ADMIN_TOKEN, KEYS

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


TEAM_SPEND = "team:costwarden_cost_usd:sum"


def close(recorded: Decimal, exact: Decimal) -> bool:
    """Prometheus adds float64s: equal to the ledger's exact sum within float rounding."""
    return abs(recorded - exact) <= Decimal("1e-12") + exact * Decimal("1e-12")


def traffic(gateway: Gateway) -> int:
    sent = 0
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for team in ("search", "ads", "research"):
            auth = {"Authorization": f"Bearer {KEYS[team]}"}
            for i in range(4):
                body = {"model": "chat", "messages": [{"role": "user", "content": f"{team} {i}"}], "max_tokens": 4}
                assert client.post("/v1/chat/completions", json=body, headers=auth).status_code == 200
                sent += 1
            stream = {"model": "chat", "messages": [{"role": "user", "content": "s"}], "max_tokens": 4, "stream": True}
            assert client.post("/v1/chat/completions", json=stream, headers=auth).status_code == 200
            failing = {"model": "failing", "messages": [{"role": "user", "content": "x"}]}
            assert client.post("/v1/chat/completions", json=failing, headers=auth).status_code >= 400
            sent += 2
    return sent


def fast_rules() -> str:
    """The exported rules, their groups evaluated every second (not every 30 s): the same expressions,
    with no half-minute wait for the first recorded values."""
    rules = rules_yaml()
    assert rules.count("\n  interval: 30s\n") == 2, rules[:200]
    return rules.replace("\n  interval: 30s\n", "\n  interval: 1s\n")


@pytest.fixture
def budgeted(make_gateway: GatewayFactory) -> Gateway:
    budget = {"id": "ads-daily", "scope": {"team": "ads"}, "window": "day", "limit_usd": "5"}
    return make_gateway(extra={"governance": {"budgets": [budget], "spikes": {"enabled": False}}})


@pytest.fixture
def scraped(budgeted: Gateway, tmp_path: Path) -> Iterator[tuple[Gateway, Prometheus]]:
    gateway = budgeted
    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()
    prometheus = Prometheus(prom_dir, [f"127.0.0.1:{gateway.port}"], fast_rules())
    prometheus.start()
    try:
        yield gateway, prometheus
    finally:
        prometheus.stop()


def test_recorded_spend_per_team_equals_the_ledger(scraped: tuple[Gateway, Prometheus]) -> None:
    gateway, prometheus = scraped
    sent = traffic(gateway)
    # A counter's first scraped value is no increase to rate(): traffic again once Prometheus has it.
    wait = time.monotonic() + 30
    while len(prometheus.vector("costwarden_cost_usd_total")) < 3:
        assert time.monotonic() < wait, "Prometheus never scraped the cost counters"
        time.sleep(0.5)
    sent += traffic(gateway)
    deadline = time.monotonic() + 60
    while True:
        report = httpx.get(gateway.url + "/admin/v1/spend", params={"group_by": "team"}, headers=ADMIN).json()
        ledger = {row["team"]: Decimal(row["cost_usd"]) for row in report["rows"]}
        recorded = {s["metric"]["team"]: Decimal(s["value"][1]) for s in prometheus.vector(TEAM_SPEND)}
        complete = report["total"]["requests"] == sent and recorded.keys() == ledger.keys()
        if complete and all(close(recorded[t], ledger[t]) for t in ledger):
            break
        assert time.monotonic() < deadline, (recorded, ledger, report["total"]["requests"], sent)
        time.sleep(0.5)
    assert set(ledger) == {"search", "ads", "research"} and all(cost > 0 for cost in ledger.values())
    # The rate and unit-cost rules evaluate to numbers on real data, and the budget's burn rate exists.
    for expr in (
        "team:costwarden_cost_usd:rate5m",
        "deployment:costwarden_cost_per_1k_requests_usd:rate5m",
        "deployment:costwarden_request_errors:ratio_rate5m",
        "budget:costwarden_budget_burn_rate:5m",
        'costwarden_time_to_first_token_seconds_count{deployment="chat"}',
        'costwarden_request_duration_seconds_count{phase="overhead"}',
        "process_resident_memory_bytes",
    ):
        wait = time.monotonic() + 30
        while not prometheus.vector(expr):
            assert time.monotonic() < wait, f"no series for {expr}"
            time.sleep(0.5)
    rules = httpx.get(prometheus.url + "/api/v1/rules").json()["data"]["groups"]
    assert all(rule["health"] != "err" for group in rules for rule in group["rules"]), rules


def test_every_dashboard_query_is_valid_promql_and_its_variables_find_values(
    scraped: tuple[Gateway, Prometheus],
) -> None:
    gateway, prometheus = scraped
    traffic(gateway)
    dashboard = build_dashboard()
    queries = panel_queries(dashboard)
    assert len(queries) >= 15
    for title, expr in queries:
        concrete = (
            expr.replace("$team", ".*").replace("$deployment", ".*").replace("$__rate_interval", "1m")
        ).replace("$__range", "1h")
        assert "$" not in concrete.replace("$labels", ""), (title, concrete)
        answer = prometheus.query(concrete)
        assert answer["status"] == "success", (title, concrete, answer)
    # The template variables' label_values() find values on a live gateway's series.
    wait = time.monotonic() + 30
    while not prometheus.vector("group by (team) (costwarden_requests_total)"):
        assert time.monotonic() < wait, "no team values for the dashboard's variable"
        time.sleep(0.5)
    teams = {s["metric"]["team"] for s in prometheus.vector("group by (team) (costwarden_requests_total)")}
    by_deployment = prometheus.vector("group by (deployment) (costwarden_requests_total)")
    deployments = {s["metric"]["deployment"] for s in by_deployment}
    assert {"search", "ads", "research"} <= teams and "chat" in deployments


def exposed_metrics(text: str) -> set[str]:
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def documented_metrics() -> set[str]:
    return set(re.findall(r"^\| `([a-z_]+)`", DOC.read_text(), flags=re.MULTILINE))


def test_every_exposed_metric_is_documented_and_nothing_else(budgeted: Gateway) -> None:
    gateway = budgeted
    traffic(gateway)
    text = httpx.get(gateway.url + "/metrics").text
    assert "_created" not in text
    windows = set(re.findall(r'window="([^"]*)"', text))
    assert windows == {"day"} and all(re.fullmatch(r"[a-z0-9_]+", w) for w in windows)
    exposed = exposed_metrics(text)
    documented = documented_metrics()
    assert exposed - documented == set(), f"exposed but not in docs/metrics.md: {sorted(exposed - documented)}"
    # The doc may list metrics a gateway shows only in some set-ups (Redis breaker, access log); none other.
    optional = {"costwarden_state_store_breaker_state", "costwarden_state_store_breaker_trips_total"}
    optional |= {"costwarden_access_log_lines_total", "costwarden_access_log_dropped_total"}
    optional |= {"costwarden_job_callback_attempts_total"}  # with batch.callbacks.secret only
    assert documented - exposed <= optional, "in docs/metrics.md but not exposed"
