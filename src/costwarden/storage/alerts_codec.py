"""Rows of the alerts table <-> Alert, shared by the SQL adapters. Decimals travel as text (SQLite)
or NUMERIC (PostgreSQL) and come back as exact Decimals; labels as a JSON object."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import orjson

from costwarden.domain.alert import Alert, AlertKind, Severity, labels_of

ALERT_COLUMNS = "id, fingerprint, kind, labels, severity, observed, threshold, summary, started_at, resolved_at"


def latest_per_id(alerts: Sequence[Alert]) -> list[Alert]:
    """The last version of each alert in a batch: an upsert may touch a row only once."""
    return list({alert.id: alert for alert in alerts}.values())


def alert_row(alert: Alert, decimals_as_text: bool) -> tuple[Any, ...]:
    observed: Decimal | str = format(alert.observed, "f") if decimals_as_text else alert.observed
    threshold: Decimal | str = format(alert.threshold, "f") if decimals_as_text else alert.threshold
    return (
        alert.id,
        alert.fingerprint,
        alert.kind.value,
        orjson.dumps(dict(alert.labels)).decode(),
        alert.severity.value,
        observed,
        threshold,
        alert.summary,
        alert.started_at,
        alert.resolved_at,
    )


def alert_from_row(row: tuple[Any, ...] | Any) -> Alert:
    (id_, print_, kind, labels, severity, observed, threshold, summary, started, resolved) = tuple(row)
    label_map = orjson.loads(labels) if isinstance(labels, (str, bytes)) else labels
    return Alert(
        id=id_,
        fingerprint=print_,
        kind=AlertKind(kind),
        labels=labels_of(label_map),
        severity=Severity(severity),
        observed=Decimal(str(observed)),
        threshold=Decimal(str(threshold)),
        summary=summary,
        started_at=float(started),
        resolved_at=None if resolved is None else float(resolved),
    )
