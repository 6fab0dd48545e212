"""Cost per unit of work, exact: per 1k requests and per 1M tokens, from metered costs or from an
hourly hardware price at a measured throughput."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from costwarden.domain.money import MILLION, quantize
from costwarden.domain.pricing import SECONDS_PER_HOUR

THOUSAND = Decimal(1000)


@dataclass(frozen=True, slots=True)
class UnitCost:
    """USD per 1,000 requests and per 1,000,000 tokens (None: no tokens were counted)."""

    per_1k_requests: Decimal
    per_1m_tokens: Decimal | None
    basis: str  # "prices" (the deployment's price sheet) or "hardware <name> $<hourly>/h"


def rate(value: float) -> Decimal:
    """A measured rate (per second) as a Decimal, through its shortest repr to 6 places."""
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"a rate must be finite and not negative, got {value!r}")
    return Decimal(repr(round(value, 6)))


def from_total(total_usd: Decimal, requests: int, tokens: int, basis: str = "prices") -> UnitCost:
    """Unit costs of `requests` requests that together cost `total_usd` and used `tokens` tokens."""
    if requests <= 0:
        raise ValueError("no requests")
    per_1m = quantize(total_usd * MILLION / tokens) if tokens > 0 else None
    return UnitCost(quantize(total_usd * THOUSAND / requests), per_1m, basis)


def from_hourly(
    hourly_usd: Decimal, requests_per_s: Decimal, tokens_per_s: Decimal | None, replicas: int = 1, basis: str = ""
) -> UnitCost:
    """Unit costs when `replicas` machines at `hourly_usd` each serve `requests_per_s` in all."""
    if requests_per_s <= 0:
        raise ValueError("a throughput of zero has no cost per unit")
    per_second = hourly_usd * replicas / SECONDS_PER_HOUR
    per_1m = quantize(per_second * MILLION / tokens_per_s) if tokens_per_s else None
    return UnitCost(quantize(per_second * THOUSAND / requests_per_s), per_1m, basis or f"hardware ${hourly_usd}/h")
