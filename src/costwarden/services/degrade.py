"""The degrade loop: the leading replica steps each `degrade` budget's hysteresis (domain.variant)
from its utilisation and saves the state to the shared store; every replica reads that state back
each tick, so all of them move traffic to the cheaper variants, and back, together.

Each switch is an event: an alert (fired on degrade, resolved on recovery) through the alert
dispatcher, a count for the metrics, and one WARNING audit line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal

from costwarden.aio import PeriodicTask
from costwarden.domain.alert import Alert, AlertKind, Condition, Severity
from costwarden.domain.variant import NORMAL, DegradeRule, DegradeState, Switch, step, within_scope
from costwarden.ports import VariantStateStore
from costwarden.services.budgets import BudgetView
from costwarden.services.governor import AlertSubmitter, Leadership

log = logging.getLogger(__name__)
HUNDRED = Decimal(100)
_SPIKES = (AlertKind.COST_SPIKE, AlertKind.VOLUME_SPIKE)
class DegradeWatch:
    def __init__(
        self,
        rules: Mapping[str, DegradeRule],
        store: VariantStateStore,
        views: Callable[[], Mapping[str, BudgetView]],
        leadership: Leadership,
        alerts: AlertSubmitter | None,
        every_s: float,
        firing: Callable[[], Awaitable[Sequence[Alert]]] | None = None,
    ) -> None:
        self._rules = dict(rules)
        self._firing = firing  # the alerts firing now (read only for rules with on_spike)
        self._store = store
        self._views = views
        self._leadership = leadership
        self._alerts = alerts
        self.degraded: dict[str, int] = {}  # degraded budgets and their levels, read on every request
        self.switches: dict[tuple[str, str], int] = {}  # (budget, degraded|recovered) -> count
        # tick keeps the last state when the store fails: the failure is its own to log.
        failure = "could not step the degrade state"
        self._task = PeriodicTask("costwarden-degrade", self._round, every_s, log=log, failure=failure)

    def current(self) -> dict[str, int]:
        return self.degraded

    async def tick(self, now: float) -> None:
        """Step (if leading) and read back the shared state; keeps the last state if the store fails."""
        if not self._rules:
            return
        try:
            states = await self._store.load()
            if await self._leadership.lead(now):
                views = self._views()
                spikes = await self._spikes()
                for budget_id, rule in self._rules.items():
                    view = views.get(budget_id)
                    if view is None:
                        continue
                    before = states.get(budget_id, NORMAL)
                    overrun = rule.on_forecast and view.forecast is not None and view.forecast.will_exceed
                    scope = dict(view.budget.scope.dimensions)
                    spiking = rule.on_spike and any(within_scope(scope, labels) for labels in spikes)
                    after, switch = step(rule, before, view.utilisation, now, overrun or spiking)
                    if after != before:
                        await self._store.save(budget_id, after)
                        states[budget_id] = after
                    if switch is not None:
                        await self._announce(budget_id, switch, view.utilisation, rule, before, after, now)
        except Exception as exc:  # the store is down: keep serving with the last known state
            log.warning("could not read or write the degrade state: %s", exc)
            return
        rules = self._rules
        self.degraded = {b: min(s.level, len(rules[b].levels)) for b, s in states.items() if s.degraded and b in rules}

    async def _spikes(self) -> list[dict[str, str]]:
        """The labels of the cost and volume spike alerts firing now (not shadow ones)."""
        if self._firing is None or not any(r.on_spike for r in self._rules.values()):
            return []
        return [
            labels
            for a in await self._firing()
            if a.firing and a.kind in _SPIKES and (labels := dict(a.labels)).get("shadow") != "true"
        ]

    async def _announce(
        self,
        budget_id: str,
        switch: Switch,
        utilisation: Decimal,
        rule: DegradeRule,
        before: DegradeState,
        after: DegradeState,
        now: float,
    ) -> None:
        key = (budget_id, switch.value)
        self.switches[key] = self.switches.get(key, 0) + 1
        percent = utilisation * HUNDRED
        summary = _summary(budget_id, switch, percent, rule, before, after)
        log.warning("audit: %s", summary)
        if self._alerts is None or switch in (Switch.DEEPER, Switch.SHALLOWER):
            return  # a change of level within one degraded stretch: the same alert episode
        condition = Condition.of(
            AlertKind.VARIANT_DEGRADED, {"budget": budget_id}, Severity.WARNING, utilisation, rule.at, summary
        )
        # One episode per degraded stretch. The store says whether it is already firing (a replica
        # that restarted, or took over the lead, must neither fire it twice nor leave it firing).
        firing = await self._episodes(condition.fingerprint)
        if switch is Switch.DEGRADED:
            if not firing:
                self._alerts.submit([Alert.start(condition, after.changed_at)])
            return
        episodes = firing or [Alert.start(condition, before.changed_at)]
        self._alerts.submit([replace(a, resolved_at=now, observed=utilisation, summary=summary) for a in episodes])

    async def _episodes(self, fingerprint: str) -> list[Alert]:
        if self._firing is None:
            return []
        return [a for a in await self._firing() if a.firing and a.fingerprint == fingerprint]

    def start(self) -> None:
        if self._rules:
            self._task.start()

    async def _round(self) -> None:
        await self.tick(time.time())

    async def stop(self) -> None:
        await self._task.stop()
        await self._store.close()


def _summary(
    budget_id: str, switch: Switch, percent: Decimal, rule: DegradeRule, before: DegradeState, after: DegradeState
) -> str:
    """The audit line (and alert summary) of one switch."""
    levels = rule.levels
    if switch is Switch.DEGRADED or switch is Switch.DEEPER:
        at = levels[after.level - 1][0] * HUNDRED
        to = "cheaper variants" if len(levels) == 1 else f"variant level {after.level} of {len(levels)}"
        return f"budget {budget_id!r} at {percent:.1f} % (>= {at} %): degraded to {to}"
    recover = levels[min(before.level, len(levels)) - 1][1] * HUNDRED
    to = "the original deployments" if switch is Switch.RECOVERED else f"variant level {after.level} of {len(levels)}"
    return f"budget {budget_id!r} at {percent:.1f} %, below {recover} % for {rule.hold_seconds:g} s: back to {to}"
