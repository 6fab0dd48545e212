"""Scale-out capped by budget, pure: the replicas that demand calls for, and how many the remaining
budget can pay for until its window ends.

    demand     = max(ceil(in_flight / target_in_flight_per_replica), ceil(rps / target_rps_per_replica))
    budget_cap = floor(remaining_usd / (replica hourly price x hours left))     (the tightest budget)
    replicas   = max(min_replicas, min(demand, budget_cap, max_replicas))

`min_replicas` always wins (a deployment is never scaled below its floor, even when the budget cannot
pay for it: that is what budget alerts are for); the cap never lets the answer exceed what the budget
can pay for above that floor. All money is Decimal; the division is exact before the floor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext

SECONDS_PER_HOUR = Decimal(3600)


@dataclass(frozen=True, slots=True)
class ScalingRule:
    """The demand model and bounds of one deployment (config `compute.scaling`)."""

    min_replicas: int
    max_replicas: int
    target_in_flight: Decimal | None = None  # requests in flight one replica should carry
    target_rps: Decimal | None = None  # requests per second one replica should carry

    def __post_init__(self) -> None:
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise ValueError(f"need 0 <= min_replicas <= max_replicas, got {self.min_replicas}, {self.max_replicas}")
        for target in (self.target_in_flight, self.target_rps):
            if target is not None and not target > 0:
                raise ValueError(f"a per-replica target must be positive, got {target}")
        if self.target_in_flight is None and self.target_rps is None:
            raise ValueError("set target_in_flight_per_replica, target_rps_per_replica or both")


@dataclass(frozen=True, slots=True)
class Room:
    """What one budget that pays for the deployment has left: USD and seconds until its window ends."""

    budget_id: str
    remaining_usd: Decimal
    seconds_left: Decimal


@dataclass(frozen=True, slots=True)
class ScaleDecision:
    replicas: int
    demand: int  # replicas demand calls for, before min/max and the cap
    wanted: int  # demand within [min_replicas, max_replicas]
    budget_cap: int | None  # replicas the tightest budget can pay for (None: no budget limits it)
    capped: bool  # the cap lowered the answer below what demand wanted
    budget: str | None  # the budget that sets the cap
    remaining_usd: Decimal | None
    hours_left: Decimal | None
    reason: str


# Beyond any replica count a config allows (max_replicas <= 10000): quotients are clipped here, so
# that no input (2^64 requests, a budget of 1e30 USD) overflows the exact division.
CEILING = 10**9
_PRECISION = 120  # digits: products of config-sized Decimals (and float seconds as Decimal) are exact


def _floor_div(value: Decimal, per: Decimal) -> int:
    """floor(value / per) for value >= 0, per > 0, exactly, clipped at CEILING."""
    with localcontext(prec=_PRECISION):
        if value >= per * CEILING:
            return CEILING
        return int(value // per)  # exact: Decimal `//` truncates the exact quotient (here below 10^9)


def _ceil_div(value: Decimal, per: Decimal) -> int:
    """ceil(value / per) for value >= 0, per > 0, exactly, clipped at CEILING."""
    whole = _floor_div(value, per)
    with localcontext(prec=_PRECISION):
        return whole if whole >= CEILING or value == per * whole else whole + 1


def demand_replicas(rule: ScalingRule, in_flight: Decimal, rps: Decimal) -> int:
    """The replicas that carry `in_flight` requests and `rps` requests a second at the targets."""
    needs = [0]
    if rule.target_in_flight is not None:
        needs.append(_ceil_div(max(in_flight, Decimal(0)), rule.target_in_flight))
    if rule.target_rps is not None:
        needs.append(_ceil_div(max(rps, Decimal(0)), rule.target_rps))
    return max(needs)


def budget_cap(remaining_usd: Decimal, hourly_usd: Decimal, seconds_left: Decimal) -> int | None:
    """floor(remaining / (hourly price x hours left)); None when nothing limits (free replicas, or a
    window with no time left). Never negative."""
    if hourly_usd <= 0 or seconds_left <= 0:
        return None
    with localcontext(prec=_PRECISION):  # products of config-sized Decimals stay exact
        cost_per_replica = hourly_usd * seconds_left  # USD x 3600 for one replica until the window ends
        budget_seconds = max(remaining_usd, Decimal(0)) * SECONDS_PER_HOUR
    return _floor_div(budget_seconds, cost_per_replica)


def decide(rule: ScalingRule, demand: int, hourly_usd: Decimal, rooms: Sequence[Room]) -> ScaleDecision:
    """The replicas to run: demand within [min, max], capped by the tightest budget, never below min."""
    wanted = min(max(demand, rule.min_replicas), rule.max_replicas)
    tightest: tuple[int, Room] | None = None
    for room in rooms:
        cap = budget_cap(room.remaining_usd, hourly_usd, room.seconds_left)
        if cap is not None and (tightest is None or cap < tightest[0]):
            tightest = (cap, room)
    if tightest is None:
        return ScaleDecision(wanted, demand, wanted, None, False, None, None, None, _why(rule, demand, wanted, None))
    cap, room = tightest
    replicas = max(rule.min_replicas, min(wanted, cap))
    hours = room.seconds_left / SECONDS_PER_HOUR
    return ScaleDecision(
        replicas, demand, wanted, cap, replicas < wanted, room.budget_id, room.remaining_usd, hours,
        _why(rule, demand, wanted, (cap, room.budget_id)),
    )  # fmt: skip


def _why(rule: ScalingRule, demand: int, wanted: int, cap: tuple[int, str] | None) -> str:
    parts = [f"demand calls for {demand} replica(s)"]
    if wanted != demand:
        parts.append(f"bounded to {wanted} by min {rule.min_replicas} / max {rule.max_replicas}")
    if cap is None:
        parts.append("no budget limits it")
    elif cap[0] < wanted:
        parts.append(f"budget {cap[1]!r} can pay for {cap[0]} until its window ends")
        if cap[0] < rule.min_replicas:
            parts.append(f"min_replicas {rule.min_replicas} still holds")
    else:
        parts.append(f"budget {cap[1]!r} can pay for {cap[0]}: not binding")
    return "; ".join(parts)


def rps_of(requests: int, seconds: float) -> Decimal:
    """Requests per second over a window (exact Decimal; 0 for an empty window)."""
    if seconds <= 0 or not math.isfinite(seconds):
        return Decimal(0)
    return Decimal(requests) / Decimal(seconds)
