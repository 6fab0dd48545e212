"""Hardware profiles and the choice between them: the cheapest one that meets an SLO at a rate.

A profile is a machine shape with an hourly price. Its capacity under an SLO is the highest
throughput a bench run on it reached while meeting the SLO; serving a required rate takes
ceil(rate / capacity) replicas.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from costwarden.domain.unit_cost import UnitCost, from_hourly, rate


@dataclass(frozen=True, slots=True)
class HardwareProfile:
    """One machine shape; prices in USD per hour. `price_source` says where the price came from."""

    name: str
    hourly_usd: Decimal
    accelerator: str | None = None
    accelerator_count: int = 0
    vcpus: int = 1
    memory_gib: Decimal = Decimal(1)
    spot_hourly_usd: Decimal | None = None
    price_source: str = "config"

    def hourly(self, spot: bool = False) -> Decimal:
        """The hourly price; the spot price when asked and known."""
        return self.spot_hourly_usd if spot and self.spot_hourly_usd is not None else self.hourly_usd


@dataclass(frozen=True, slots=True)
class Capacity:
    """What a profile sustained while meeting the SLO: requests/s and tokens per request."""

    profile: HardwareProfile
    requests_per_s: float  # 0: no measured run met the SLO
    tokens_per_request: float
    label: str = ""  # which results file / deployment it comes from


@dataclass(frozen=True, slots=True)
class Option:
    """A profile priced for the required rate: replicas, unit costs and spare capacity."""

    capacity: Capacity
    replicas: int
    hourly_usd: Decimal
    cost: UnitCost
    headroom: float  # spare capacity over the rate served: 0.25 = 25 % more than needed


def plan(capacity: Capacity, required_rate: float | None, spot: bool = False) -> Option | None:
    """The profile's cost at `required_rate` (None: at its own capacity); None if it meets no SLO."""
    if capacity.requests_per_s <= 0:
        return None
    served = capacity.requests_per_s if required_rate is None else required_rate
    if served <= 0:
        raise ValueError("the required rate must be above zero")
    replicas = max(1, math.ceil(served / capacity.requests_per_s - 1e-9))
    hourly = capacity.profile.hourly(spot)
    tokens = rate(served * capacity.tokens_per_request) if capacity.tokens_per_request > 0 else None
    basis = f"{capacity.profile.name} ({capacity.profile.price_source}) ${hourly}/h x {replicas}"
    cost = from_hourly(hourly, rate(served), tokens, replicas, basis)
    headroom = replicas * capacity.requests_per_s / served - 1
    return Option(capacity, replicas, hourly * replicas, cost, headroom)


def rank_options(capacities: Iterable[Capacity], required_rate: float | None, spot: bool = False) -> list[Option]:
    """Every profile that can meet the SLO, cheapest per request first (ties: more headroom first)."""
    options = [o for c in capacities if (o := plan(c, required_rate, spot)) is not None]
    return sorted(options, key=lambda o: (o.cost.per_1k_requests, -o.headroom, o.capacity.profile.name))
