"""The JSON form of an Alert, shared by the sinks (and fit for the admin API): decimals as strings,
never floats; times as RFC 3339 in UTC with milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from costwarden.domain.alert import Alert


def rfc3339(ts: float) -> str:
    """Unix seconds -> `2025-06-01T12:00:00.000Z`."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decimal_text(value: Decimal) -> str:
    """A decimal in positional notation (`80`, not `8E+1`), exact."""
    return format(value, "f")


def status_of(alert: Alert) -> str:
    return "firing" if alert.firing else "resolved"


def alert_json(alert: Alert) -> dict[str, object]:
    return {
        "id": alert.id,
        "fingerprint": alert.fingerprint,
        "kind": alert.kind.value,
        "labels": dict(alert.labels),
        "severity": alert.severity.value,
        "observed": decimal_text(alert.observed),
        "threshold": decimal_text(alert.threshold),
        "summary": alert.summary,
        "started_at": rfc3339(alert.started_at),
        "resolved_at": None if alert.resolved_at is None else rfc3339(alert.resolved_at),
        "status": status_of(alert),
    }
