"""Scale-out capped by budget: for each deployment with `compute.scaling`, the replicas that demand
calls for (in-flight requests and throughput per replica), capped at what the remaining budget of the
deployment's scope can pay for until its window ends (domain.scaling). Serves
`GET /scaling/v1/{deployment}` (KEDA's metrics-api scaler) and the governor's `scale_capped` alert.

Demand comes from the gateway's own state: throughput from the ledger's records of the last
`rate_window_seconds` (shared by every gateway replica writing the same ledger); requests in flight
from this process (a gateway replica counts its own; see docs/compute.md for several replicas).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from costwarden.config.compute import ScalingConfig
from costwarden.config.hardware import resolve_profile
from costwarden.config.models import Config
from costwarden.domain.alert import AlertKind, Condition, Severity
from costwarden.domain.budget import Budget
from costwarden.domain.money import usd_text
from costwarden.domain.record import Outcome
from costwarden.domain.report import SpendQuery
from costwarden.domain.scaling import Room, ScaleDecision, decide, demand_replicas, rps_of
from costwarden.ports import LedgerStore
from costwarden.services.budgets import BudgetView

_MICRO = Decimal("0.000001")


class ScalingUnknown(LookupError):
    """No such deployment, or it has no `compute.scaling`; the message says which."""


@dataclass(frozen=True, slots=True)
class Scaled:
    """One deployment's answer: the decision and the demand it was made from."""

    deployment: str
    decision: ScaleDecision
    in_flight: int
    rps: Decimal
    replica_hourly_usd: Decimal
    scaling: ScalingConfig


def pays_for(budget: Budget, deployment: str, scaling: ScalingConfig) -> bool:
    """Whether `budget` pays for the deployment's replicas: the one named in `scaling.budget`, else
    every budget scoped to exactly this deployment or to everything."""
    if scaling.budget is not None:
        return budget.id == scaling.budget
    return budget.scope.dimensions in ((), (("deployment", deployment),))


def seconds_left(view: BudgetView, now: float) -> Decimal:
    """Until the budget's window ends; a rolling window counts spend for its whole length, so
    replicas started now are paid from it for that long."""
    rolling = view.budget.window.rolling_seconds
    seconds = float(rolling) if rolling is not None else max(0.0, view.window_end - now)
    return Decimal(seconds).quantize(_MICRO)


class ScalingService:
    def __init__(self, config: Config, ledger: LedgerStore, in_flight: Callable[[str], int]) -> None:
        self._ledger = ledger
        self._in_flight = in_flight
        self._scaled: dict[str, tuple[ScalingConfig, Decimal]] = {}
        self._known = {d.name for d in config.deployments}
        for dep in config.deployments:
            compute = dep.compute
            profile = resolve_profile(compute.profile, config.hardware) if compute is not None else None
            if compute is not None and compute.scaling is not None and profile is not None:
                self._scaled[dep.name] = (compute.scaling, profile.hourly(compute.spot))
        self.last: dict[str, Scaled] = {}  # the latest answer per deployment (metrics)

    @property
    def deployments(self) -> list[str]:
        return sorted(self._scaled)

    def _lookup(self, deployment: str) -> tuple[ScalingConfig, Decimal]:
        found = self._scaled.get(deployment)
        if found is not None:
            return found
        if deployment in self._known:
            raise ScalingUnknown(f"deployment {deployment!r} has no `compute.scaling` in the config")
        raise ScalingUnknown(f"no deployment {deployment[:128]!r}")

    async def rps(self, deployment: str, window_s: float, now: float) -> Decimal:
        """Requests per second that reached the deployment over the window (refusals left out)."""
        where = (("deployment", deployment),)
        query = SpendQuery(group_by=("outcome",), start=now - window_s, end=now, where=where, percentiles=False)
        report = await self._ledger.spend(query)
        served = sum(row.requests for row in report.rows if row.group[0] != Outcome.REJECTED.value)
        return rps_of(served, window_s)

    async def scale(
        self,
        deployment: str,
        budgets: Sequence[Budget],
        view: Callable[[Budget], Awaitable[BudgetView]],
        now: float,
    ) -> Scaled:
        """The answer for one deployment. Raises ScalingUnknown, and what reading a budget raises."""
        scaling, hourly = self._lookup(deployment)
        in_flight = self._in_flight(deployment)
        rps = await self.rps(deployment, scaling.rate_window_seconds, now)
        demand = demand_replicas(scaling.rule(), Decimal(in_flight), rps)
        rooms = []
        for budget in budgets:
            if pays_for(budget, deployment, scaling):
                seen = await view(budget)
                rooms.append(Room(budget.id, seen.remaining_usd, seconds_left(seen, now)))
        scaled = Scaled(deployment, decide(scaling.rule(), demand, hourly, rooms), in_flight, rps, hourly, scaling)
        self.last[deployment] = scaled
        return scaled

    async def conditions(self, views: Mapping[str, BudgetView], now: float) -> list[Condition]:
        """`scale_capped` for each deployment whose budget cap binds now (the governor's tick)."""
        budgets = [v.budget for v in views.values()]

        async def view(budget: Budget) -> BudgetView:
            return views[budget.id]

        found = []
        for deployment in self.deployments:
            decision = (await self.scale(deployment, budgets, view, now)).decision
            if decision.capped and decision.budget_cap is not None:
                found.append(capped_condition(deployment, decision))
        return found


def capped_condition(deployment: str, decision: ScaleDecision) -> Condition:
    return Condition.of(
        AlertKind.SCALE_CAPPED,
        {"deployment": deployment},
        Severity.WARNING,
        Decimal(decision.wanted),
        Decimal(decision.budget_cap or 0),
        f"deployment {deployment!r} wants {decision.wanted} replica(s) but budget {decision.budget!r} "
        f"(${decision.remaining_usd} left) can pay for {decision.budget_cap} until its window ends: "
        f"scaled to {decision.replicas}",
    )


def scaled_json(scaled: Scaled) -> dict[str, Any]:
    """The endpoint's body: KEDA reads `replicas` (valueLocation); the rest says why."""
    d = scaled.decision
    return {
        "deployment": scaled.deployment,
        "replicas": d.replicas,
        "demand": d.demand,
        "wanted": d.wanted,
        "budget_cap": d.budget_cap,
        "capped": d.capped,
        "budget": d.budget,
        "remaining_usd": None if d.remaining_usd is None else usd_text(d.remaining_usd),
        "hours_left": None if d.hours_left is None else float(d.hours_left.quantize(_MICRO)),
        "replica_hourly_usd": usd_text(scaled.replica_hourly_usd),
        "in_flight": scaled.in_flight,
        "rps": float(scaled.rps.quantize(_MICRO)),
        "min_replicas": scaled.scaling.min_replicas,
        "max_replicas": scaled.scaling.max_replicas,
        "reason": d.reason,
    }
