"""Alertmanager payloads: sanitised label names, our labels first, endsAt ahead or at resolution."""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costwarden.alerts.alertmanager import label_name, labels_for, postable
from costwarden.domain.alert import Alert, AlertKind, Condition, Severity
from tests.unit.alerts.sample import T0, budget_alert, resolved

VALID = r"[A-Za-z_][A-Za-z0-9_]*"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("team", "team"),
        ("cost-center", "cost_center"),
        ("app.kubernetes.io/name", "app_kubernetes_io_name"),
        ("9lives", "_9lives"),
        ("", "_"),
        ("équipe", "_quipe"),
        ("__meta", "__meta"),
    ],
)
def test_label_names_are_sanitised(raw: str, clean: str) -> None:
    assert label_name(raw) == clean


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(max_size=30))
def test_every_sanitised_name_is_valid(raw: str) -> None:
    assert re.fullmatch(VALID, label_name(raw))


def test_our_labels_come_first_and_scope_labels_cannot_take_them() -> None:
    condition = Condition.of(
        AlertKind.COST_SPIKE,
        {"severity": "low", "alertname": "x", "team": "ml", "cost-center": "42", "cost.center": "43", "empty": ""},
        Severity.CRITICAL,
        Decimal(5),
        Decimal(2),
    )
    labels = labels_for(Alert.start(condition, T0))
    assert labels == {
        "alertname": "cost_spike",
        "severity": "critical",
        "scope_alertname": "x",
        "cost_center": "42",  # "cost-center" sorts before "cost.center"; the first wins
        "scope_severity": "low",
        "team": "ml",
    }


def test_a_firing_alert_ends_ahead_and_a_resolved_one_at_its_resolution() -> None:
    alert = budget_alert()
    firing = postable(alert, now=T0 + 30, ttl_s=240.0)
    assert firing == {
        "labels": {
            "alertname": "budget_threshold",
            "severity": "warning",
            "budget": "team-search",
            "team": "search",
            "window": "month@UTC|2025-06-01T00:00:00+00:00",
        },
        "annotations": {"observed": "81.500000000", "threshold": "80", "summary": "team-search spent 81.5 of 100 USD"},
        "startsAt": "2025-06-15T15:06:40.000Z",
        "endsAt": "2025-06-15T15:11:10.000Z",
    }
    done = postable(resolved(alert), now=T0 + 900, ttl_s=240.0, generator_url="https://costwarden.example/")
    assert done["endsAt"] == "2025-06-15T15:11:40.000Z" and done["generatorURL"] == "https://costwarden.example/"
    quiet = postable(replace(alert, summary=""), now=T0, ttl_s=60.0)
    assert quiet["annotations"] == {"observed": "81.500000000", "threshold": "80"}


@pytest.mark.parametrize(("resend", "failover", "horizon"), [(60.0, 16.0, 240.0), (1.0, 16.0, 18.0), (1.0, 0.0, 4.0)])
async def test_a_firing_alert_outlives_a_leader_failover_in_alertmanager(
    resend: float, failover: float, horizon: float
) -> None:
    """Only the leader re-sends; when it dies, the next takes the lease over after up to `failover`
    seconds and re-sends one interval later. Until then Alertmanager must not see the alert end
    (it did, for 5.5 s, with a 1 s re-send interval and a 15 s lease)."""
    import aiohttp

    from costwarden.alerts.alertmanager import AlertmanagerSink
    from costwarden.config.alerts import AlertmanagerSinkConfig

    config = AlertmanagerSinkConfig(type="alertmanager", url="http://127.0.0.1:9", resend_interval_s=resend)
    async with aiohttp.ClientSession() as session:
        sink = AlertmanagerSink(config, session, failover_s=failover)
        assert sink.horizon_s == horizon
        assert sink.horizon_s >= failover + resend
