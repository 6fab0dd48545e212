"""The JSON form of an alert: exact decimals as strings, RFC 3339 UTC times, firing or resolved."""

from __future__ import annotations

from decimal import Decimal

import orjson

from costwarden.alerts.payload import alert_json, decimal_text, rfc3339
from costwarden.alerts.webhook import body_of
from tests.unit.alerts.sample import T0, budget_alert, resolved


def test_times_and_decimals() -> None:
    assert rfc3339(T0) == "2025-06-15T15:06:40.000Z"
    assert rfc3339(T0 + 0.25) == "2025-06-15T15:06:40.250Z"
    assert decimal_text(Decimal("8E+1")) == "80"
    assert decimal_text(Decimal("0.000000001")) == "0.000000001"
    assert decimal_text(Decimal("81.500000000")) == "81.500000000"


def test_a_firing_and_a_resolved_alert() -> None:
    alert = budget_alert()
    firing = alert_json(alert)
    assert firing == {
        "id": alert.id,
        "fingerprint": alert.fingerprint,
        "kind": "budget_threshold",
        "labels": {"budget": "team-search", "team": "search", "window": "month@UTC|2025-06-01T00:00:00+00:00"},
        "severity": "warning",
        "observed": "81.500000000",
        "threshold": "80",
        "summary": "team-search spent 81.5 of 100 USD",
        "started_at": "2025-06-15T15:06:40.000Z",
        "resolved_at": None,
        "status": "firing",
    }
    done = alert_json(resolved(alert))
    assert done["status"] == "resolved" and done["resolved_at"] == "2025-06-15T15:11:40.000Z"


def test_the_webhook_body_lists_the_alerts() -> None:
    alerts = [budget_alert("a"), resolved(budget_alert("b"))]
    body = orjson.loads(body_of(alerts))
    assert list(body) == ["alerts"]
    assert [a["status"] for a in body["alerts"]] == ["firing", "resolved"]
    assert all(isinstance(a["observed"], str) for a in body["alerts"])
