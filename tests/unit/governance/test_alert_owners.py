"""Each service resolves only the alerts it owns (domain.alert.AlertOwner): a governor tick that
resolves a budget alert leaves the degrade loop's alert, the ledger's quarantine event and, on a
replica without scaling, the scaling caps' alert firing; with scaling it keeps a cap that binds."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from costwarden.chain.admit import StoreHealth
from costwarden.chain.policy import AdmissionPolicy
from costwarden.domain.alert import OWNERS, Alert, AlertKind, AlertOwner, Condition, Severity, kinds_of, owner_of
from costwarden.services.governor import Governor
from costwarden.storage.memory_counters import MemoryCounters
from costwarden.storage.sqlite import SQLiteStore
from tests.unit.governance.test_governor import NOW, Alerts, Lease, governor, ledger, spend, team_budget
from tests.unit.governance.test_scale_capped import Caps

__all__ = ["ledger"]  # the fixture


def _alert(kind: AlertKind, labels: dict[str, str]) -> Alert:
    return Alert.start(Condition.of(kind, labels, Severity.WARNING, Decimal(1), Decimal(1), "stored"), NOW - 60)


def test_every_kind_has_one_owner() -> None:
    assert set(OWNERS) == set(AlertKind)
    assert kinds_of(set(AlertOwner)) == frozenset(AlertKind)
    assert owner_of(AlertKind.VARIANT_DEGRADED) is AlertOwner.DEGRADE
    assert _alert(AlertKind.SCALE_CAPPED, {"deployment": "fraud"}).owner is AlertOwner.SCALING


async def test_a_governor_tick_resolves_only_the_governors_alerts(ledger: SQLiteStore) -> None:
    budget = team_budget("0.05")
    await spend(ledger, served=5, cost="0.01")  # exhausted: the governor fires its alert
    others = [
        _alert(AlertKind.VARIANT_DEGRADED, {"budget": budget.id}),
        _alert(AlertKind.SCALE_CAPPED, {"deployment": "fraud"}),
        _alert(AlertKind.LEDGER_QUARANTINE, {"request_id": "r1"}),
    ]
    await ledger.save_alerts(others)
    gov, alerts = governor([budget], MemoryCounters(), ledger)  # no scaling on this replica
    await gov.rebuild(NOW)
    await gov.step(NOW)  # takes the lead: loads the firing alerts of its own kinds (none)
    [exhausted] = alerts.sent
    assert exhausted.kind is AlertKind.BUDGET_EXHAUSTED and alerts.adopted == []
    gov._policy.set_budgets([replace(budget, limit_usd=Decimal(1))])  # raised: no longer exhausted
    gov._budgets = None
    await gov.step(NOW + 1)
    assert [(a.id, a.resolved_at) for a in alerts.sent[1:]] == [(exhausted.id, NOW + 1)]
    assert [a.id for a in gov.active] == []


async def test_with_scaling_the_governor_keeps_a_binding_cap_and_leaves_the_others(ledger: SQLiteStore) -> None:
    budget = team_budget("10")
    capped = _alert(AlertKind.SCALE_CAPPED, {"deployment": "fraud"})  # Caps binds on deployment fraud
    degraded = _alert(AlertKind.VARIANT_DEGRADED, {"budget": budget.id})
    await ledger.save_alerts([capped, degraded])
    alerts = Alerts(ledger)
    policy = AdmissionPolicy([budget], (), (), 600.0, {})

    async def firing() -> list[Alert]:
        return await ledger.list_alerts(True, 100)

    gov = Governor(
        policy, MemoryCounters(), ledger, StoreHealth(), alerts, Lease(True), 1.0, None, firing=firing, scaling=Caps()
    )
    await gov.rebuild(NOW)
    await gov.step(NOW)
    assert [a.id for a in alerts.adopted] == [capped.id] and not alerts.sent
    assert [a.id for a in gov.active] == [capped.id]


async def test_a_shadow_spike_alert_is_never_the_notified_books(ledger: SQLiteStore) -> None:
    # Spikes in shadow mode are recorded, never notified (services/spikes.py): a governor taking
    # the lead must neither re-announce one (adopt) nor send its resolution to the sinks.
    shadow = _alert(AlertKind.COST_SPIKE, {"team": "search", "shadow": "true"})
    notified = _alert(AlertKind.COST_SPIKE, {"team": "ads"})
    await ledger.save_alerts([shadow, notified])
    assert (shadow.owner, notified.owner) == (AlertOwner.SHADOW, AlertOwner.GOVERNOR)
    gov, alerts = governor([team_budget("10")], MemoryCounters(), ledger)  # spikes off here: both cleared
    await gov.rebuild(NOW)
    await gov.step(NOW)
    assert [a.id for a in alerts.adopted] == [notified.id]
    assert [(a.id, a.resolved_at) for a in alerts.sent] == [(notified.id, NOW)]
    assert [a.id for a in alerts.recorded] == [shadow.id] and alerts.recorded[0].resolved_at == NOW
