"""Alerts for the alert tests: a budget threshold firing and then resolved."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from costwarden.domain.alert import Alert, AlertKind, Condition, Severity

T0 = 1_750_000_000.0  # 2025-06-15T15:06:40Z


def budget_alert(budget: str = "team-search", at: float = T0) -> Alert:
    labels = {"budget": budget, "team": "search", "window": "month@UTC|2025-06-01T00:00:00+00:00"}
    condition = Condition.of(
        AlertKind.BUDGET_THRESHOLD,
        labels,
        Severity.WARNING,
        Decimal("81.500000000"),
        Decimal("8E+1"),
        f"{budget} spent 81.5 of 100 USD",
    )
    return Alert.start(condition, at)


def resolved(alert: Alert, after_s: float = 300.0) -> Alert:
    return replace(alert, resolved_at=alert.started_at + after_s)
