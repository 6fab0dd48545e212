"""Pricing: turn a request's usage into a cost in USD, exactly.

A price sheet may combine any of: per 1M input / output / cached-input tokens, per request, per
inference item, and per compute-second (hourly hardware price shared by the requests a replica
serves at once). Cached input tokens are billed at the cached price, the rest at the input price.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from costwarden.domain.money import MILLION, ZERO, quantize
from costwarden.domain.usage import Usage

SECONDS_PER_HOUR = Decimal(3600)


@dataclass(frozen=True, slots=True)
class ComputePrice:
    """Hardware price: USD per replica-hour, shared by `concurrency` simultaneous requests."""

    hourly_usd: Decimal
    concurrency: int = 1


@dataclass(frozen=True, slots=True)
class PriceSheet:
    """Prices of one deployment, all in USD. `None` means "not priced on this basis"."""

    input_per_1m: Decimal | None = None
    output_per_1m: Decimal | None = None
    cached_input_per_1m: Decimal | None = None
    per_request: Decimal | None = None
    per_item: Decimal | None = None
    compute: ComputePrice | None = None

    @property
    def basis(self) -> str:
        """The pricing bases in use, e.g. `tokens+request`; stored with every ledger record."""
        parts: list[str] = []
        if self.input_per_1m is not None or self.output_per_1m is not None or self.cached_input_per_1m is not None:
            parts.append("tokens")
        if self.per_request is not None:
            parts.append("request")
        if self.per_item is not None:
            parts.append("item")
        if self.compute is not None:
            parts.append("compute")
        return "+".join(parts) or "free"


FREE = PriceSheet()


def token_cost(sheet: PriceSheet, usage: Usage) -> Decimal:
    cached = min(usage.cached_tokens, usage.input_tokens)
    uncached = usage.input_tokens - cached
    input_price = sheet.input_per_1m or ZERO
    cached_price = sheet.cached_input_per_1m if sheet.cached_input_per_1m is not None else input_price
    output_price = sheet.output_per_1m or ZERO
    total = uncached * input_price + cached * cached_price + usage.output_tokens * output_price
    return total / MILLION


def compute_cost(price: ComputePrice, seconds: float) -> Decimal:
    # The float duration is converted once through its shortest repr, so the result is reproducible.
    duration = Decimal(repr(round(seconds, 6)))
    return duration * price.hourly_usd / SECONDS_PER_HOUR / Decimal(price.concurrency)


def price(sheet: PriceSheet, usage: Usage, served: bool = True) -> Decimal:
    """Cost of one request in USD, quantised. Requests not served by the upstream cost nothing."""
    if not served:
        return ZERO
    total = token_cost(sheet, usage)
    if sheet.per_request is not None:
        total += sheet.per_request
    if sheet.per_item is not None:
        total += sheet.per_item * usage.items
    if sheet.compute is not None:
        total += compute_cost(sheet.compute, usage.upstream_seconds)
    return quantize(total)
