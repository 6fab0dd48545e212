"""Alerts as records (what fired, on which scope, since when) and the pure state machine that sends
each firing condition once and resolves it when the condition clears. Times are Unix seconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum

Labels = tuple[tuple[str, str], ...]


class AlertKind(StrEnum):
    BUDGET_THRESHOLD = "budget_threshold"
    BUDGET_EXHAUSTED = "budget_exhausted"
    FORECAST_OVERRUN = "forecast_overrun"
    COST_SPIKE = "cost_spike"
    VOLUME_SPIKE = "volume_spike"
    STATE_STORE_UNREACHABLE = "state_store_unreachable"
    LEDGER_QUARANTINE = "ledger_quarantine"
    VARIANT_DEGRADED = "variant_degraded"  # a degrade budget moved traffic to cheaper variants
    SCALE_CAPPED = "scale_capped"  # a budget holds a deployment below the replicas its demand calls for


class AlertOwner(StrEnum):
    """The service that fires an alert and resolves it: each resolves only its own. A pure
    function of the kind (`owner_of`) and the `shadow` label (`Alert.owner`), so stores keep no
    column for it and alerts stored before owners existed are classified alike."""

    GOVERNOR = "governor"  # budgets, forecasts, spikes, the counter store (services.governor)
    SCALING = "scaling"  # scaling caps: services.scaling's conditions, evaluated on the governor's tick
    DEGRADE = "degrade"  # the degrade loop (services.degrade): fired on degrade, resolved on recovery
    LEDGER = "ledger"  # quarantined records: an event the recorder fires; no loop resolves it
    # spikes in shadow mode (label shadow=true): the governor's shadow book records them and
    # resolves them in the store, never through a sink; its notified book never holds one
    SHADOW = "shadow"


OWNERS: Mapping[AlertKind, AlertOwner] = {
    AlertKind.BUDGET_THRESHOLD: AlertOwner.GOVERNOR,
    AlertKind.BUDGET_EXHAUSTED: AlertOwner.GOVERNOR,
    AlertKind.FORECAST_OVERRUN: AlertOwner.GOVERNOR,
    AlertKind.COST_SPIKE: AlertOwner.GOVERNOR,
    AlertKind.VOLUME_SPIKE: AlertOwner.GOVERNOR,
    AlertKind.STATE_STORE_UNREACHABLE: AlertOwner.GOVERNOR,
    AlertKind.LEDGER_QUARANTINE: AlertOwner.LEDGER,
    AlertKind.VARIANT_DEGRADED: AlertOwner.DEGRADE,
    AlertKind.SCALE_CAPPED: AlertOwner.SCALING,
}


SHADOW_LABEL = ("shadow", "true")  # a spike alert of shadow mode (services/spikes.py)


def owner_of(kind: AlertKind) -> AlertOwner:
    return OWNERS[kind]


def kinds_of(owners: Collection[AlertOwner]) -> frozenset[AlertKind]:
    """The alert kinds these owners fire and resolve."""
    return frozenset(kind for kind, owner in OWNERS.items() if owner in owners)


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


def labels_of(labels: Mapping[str, str]) -> Labels:
    """Labels in their canonical order (sorted by name)."""
    return tuple(sorted(labels.items()))


def fingerprint(kind: AlertKind, labels: Mapping[str, str] | Labels) -> str:
    """A stable id of "this kind of alert on this scope": the same on every replica and restart."""
    pairs = labels_of(labels) if isinstance(labels, Mapping) else tuple(sorted(labels))
    text = "\n".join((kind.value, *(f"{name}={value}" for name, value in pairs)))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class Condition:
    """Something that holds now and should be alerted on. `observed` and `threshold` are in the
    kind's unit: USD for budgets and cost spikes, requests per window for volume spikes."""

    kind: AlertKind
    labels: Labels
    severity: Severity
    observed: Decimal
    threshold: Decimal
    summary: str = ""

    @classmethod
    def of(
        cls,
        kind: AlertKind,
        labels: Mapping[str, str],
        severity: Severity,
        observed: Decimal,
        threshold: Decimal,
        summary: str = "",
    ) -> Condition:
        return cls(kind, labels_of(labels), severity, observed, threshold, summary)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.kind, self.labels)


@dataclass(frozen=True, slots=True)
class Alert:
    """One firing episode of a condition: from `started_at` until `resolved_at` (None: firing).
    `id` is unique per episode; `fingerprint` is shared by every episode of the same condition."""

    id: str
    fingerprint: str
    kind: AlertKind
    labels: Labels
    severity: Severity
    observed: Decimal
    threshold: Decimal
    summary: str
    started_at: float
    resolved_at: float | None = None

    @property
    def firing(self) -> bool:
        return self.resolved_at is None

    @property
    def owner(self) -> AlertOwner:
        return AlertOwner.SHADOW if SHADOW_LABEL in self.labels else OWNERS[self.kind]

    @classmethod
    def start(cls, condition: Condition, now: float) -> Alert:
        print_ = condition.fingerprint
        return cls(
            f"{print_}-{round(now * 1000)}", print_, condition.kind, condition.labels, condition.severity,
            condition.observed, condition.threshold, condition.summary, now,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What to send: alerts that start firing, alerts that resolved, and the alerts still firing
    (with their latest observed value; they are not sent again)."""

    to_fire: tuple[Alert, ...]
    to_resolve: tuple[Alert, ...]
    still_active: tuple[Alert, ...]


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


def evaluate(
    active: Iterable[Alert],
    conditions: Iterable[Condition],
    now: float,
    kinds: Collection[AlertKind] | None = None,
) -> Evaluation:
    """Compare the firing alerts with the conditions that hold at `now`.

    A condition with no firing alert fires; a firing alert whose condition no longer holds
    resolves; one whose condition still holds stays, unsent. Only alerts of `kinds` (all if None)
    can resolve, so an evaluator that checks only budgets leaves spike alerts alone.
    """
    holding: dict[str, Condition] = {}
    for condition in conditions:
        seen = holding.get(condition.fingerprint)
        if seen is None or _RANK[condition.severity] > _RANK[seen.severity]:
            holding[condition.fingerprint] = condition
    firing = {alert.fingerprint: alert for alert in active if alert.firing}
    to_fire = tuple(Alert.start(c, now) for print_, c in holding.items() if print_ not in firing)
    to_resolve: list[Alert] = []
    still: list[Alert] = []
    for print_, alert in firing.items():
        current = holding.get(print_)
        if current is not None:
            still.append(replace(alert, observed=current.observed, summary=current.summary or alert.summary))
        elif kinds is None or alert.kind in kinds:
            to_resolve.append(replace(alert, resolved_at=now))
        else:
            still.append(alert)
    return Evaluation(to_fire, tuple(to_resolve), tuple(still))


@dataclass(frozen=True, slots=True)
class AlertBook:
    """The firing alerts of one evaluator, carried from one evaluation to the next."""

    active: tuple[Alert, ...] = ()

    def evaluate(
        self, conditions: Iterable[Condition], now: float, kinds: Collection[AlertKind] | None = None
    ) -> tuple[AlertBook, Evaluation]:
        result = evaluate(self.active, conditions, now, kinds)
        return AlertBook((*result.still_active, *result.to_fire)), result
