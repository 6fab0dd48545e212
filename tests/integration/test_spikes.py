"""Spike detection end to end: a burst of traffic raises exactly one cost_spike alert per series,
and an equal burst whose dollar impact is under the floor raises none."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.integration.conftest import GatewayFactory
from tests.integration.procs import Gateway
from tests.integration.setup_config import ADMIN_TOKEN, KEYS

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def paced(gateway: Gateway, phases: list[tuple[float, float]]) -> int:
    """Send chat requests at `rate` per second for `seconds`, phase after phase; returns how many."""
    body = {"model": "chat", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3}
    headers = {"Authorization": f"Bearer {KEYS['search']}"}
    sent = 0
    with httpx.Client(timeout=10) as client:
        for rate, seconds in phases:
            start = time.monotonic()
            n = 0
            while (now := time.monotonic()) < start + seconds:
                due = start + n / rate
                if now < due:
                    time.sleep(due - now)
                assert client.post(gateway.url + "/v1/chat/completions", json=body, headers=headers).status_code == 200
                n += 1
            sent += n
    return sent


def spike_config(floor: str, shadow: bool = False) -> dict[str, Any]:
    return {
        "governance": {
            "evaluate_every_seconds": 0.2,
            "spikes": {
                "window_seconds": 1,
                "warmup_windows": 4,
                "consecutive": 2,
                "clear_windows": 2,
                "z_threshold": 3,
                "min_impact_usd": floor,
                "shadow": shadow,
            },
        }
    }


def spike_alerts(gateway: Gateway) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = httpx.get(gateway.url + "/admin/v1/alerts", headers=ADMIN).json()
    return [a for a in found if a["kind"] == "cost_spike"]


def drive_burst(gateway: Gateway) -> None:
    # Baseline (past the four warm-up windows; the dollar floor keeps its level from alerting), burst,
    # back to baseline for longer than the two calm windows that resolve the alert.
    paced(gateway, [(8, 5.0), (60, 3.0), (8, 3.0)])


def settled() -> None:
    time.sleep(2.0)  # let the last windows close and be evaluated


def resolved(gateway: Gateway, count: int) -> list[dict[str, Any]]:
    """The spike alerts once `count` are there and all resolved (at most 10 s after the traffic ends)."""
    deadline = time.monotonic() + 10
    while True:
        alerts = spike_alerts(gateway)
        if (len(alerts) >= count and all(a["resolved_at"] for a in alerts)) or time.monotonic() > deadline:
            return alerts
        time.sleep(0.2)


def test_a_burst_raises_exactly_one_cost_spike_per_series(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(extra=spike_config("0.001"))
    drive_burst(gateway)
    alerts = resolved(gateway, 2)
    by_series: dict[str, int] = {}
    for alert in alerts:
        series = ",".join(f"{k}={v}" for k, v in sorted(alert["labels"].items()))
        by_series[series] = by_series.get(series, 0) + 1
    assert by_series == {"deployment=chat": 1, "team=search": 1}, alerts
    assert all(a["resolved_at"] is not None for a in alerts)  # the burst ended, so did the alert


def test_an_equal_burst_under_the_dollar_floor_raises_none(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(extra=spike_config("5"))
    drive_burst(gateway)
    settled()
    assert spike_alerts(gateway) == []


def test_shadow_mode_records_without_notifying(make_gateway: GatewayFactory) -> None:
    # A webhook to a closed port: any notification attempt would count as failed.
    sink = {"type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "s" * 16, "max_retries": 0}
    gateway = make_gateway(extra={**spike_config("0.001", shadow=True), "alerts": [sink]})
    drive_burst(gateway)
    settled()
    recorded = spike_alerts(gateway)
    assert recorded and all(a["labels"].get("shadow") == "true" for a in recorded)
    metrics = httpx.get(gateway.url + "/metrics").text
    assert 'costwarden_alert_deliveries_total{result="sent"} 0.0' in metrics
    assert 'costwarden_alert_deliveries_total{result="failed"} 0.0' in metrics
