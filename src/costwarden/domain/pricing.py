"""Pricing: turn a request's usage into a cost in USD, exactly.

A price sheet may combine any of: per 1M input / output / cached-input tokens, per request, per
inference item, and per compute-second (hourly hardware price shared by the requests a replica
serves at once). Cached input tokens are billed at the cached price, the rest at the input price.

The modal units (docs/modalities.md): per image by kind (`size/quality`, else `size`), per second
of input audio, per 1M speech input characters, per reranked document and per search unit (each
started block of SEARCH_UNIT_DOCUMENTS documents). Reasoning tokens are output tokens: priced there.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from costwarden.domain.money import MILLION, ZERO, quantize
from costwarden.domain.usage import Usage

SECONDS_PER_HOUR = Decimal(3600)
MS_PER_SECOND = Decimal(1000)
SEARCH_UNIT_DOCUMENTS = 100  # Cohere's search unit: a query over up to 100 documents


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
    per_image: tuple[tuple[str, Decimal], ...] | None = None  # (kind, USD): `1024x1024/hd` or `1024x1024`
    per_audio_second: Decimal | None = None
    per_1m_characters: Decimal | None = None
    per_document: Decimal | None = None
    per_search_unit: Decimal | None = None

    def image_price(self, kind: str | None) -> Decimal | None:
        """The price of one image of `kind` (`size/quality`), falling back to its size; None when
        the sheet prices images but not this kind (or `kind` is None)."""
        if self.per_image is None or kind is None:
            return None
        prices = dict(self.per_image)
        found = prices.get(kind)
        return found if found is not None else prices.get(kind.partition("/")[0])

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
        for name, value in (
            ("image", self.per_image),
            ("audio", self.per_audio_second),
            ("characters", self.per_1m_characters),
            ("document", self.per_document),
            ("search_unit", self.per_search_unit),
        ):
            if value is not None:
                parts.append(name)
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


def search_units(documents: int) -> int:
    """Search units of a rerank over `documents`: each started block of SEARCH_UNIT_DOCUMENTS."""
    return -(-documents // SEARCH_UNIT_DOCUMENTS)


def unit_cost(sheet: PriceSheet, usage: Usage, image_kind: str | None = None) -> Decimal:
    """The modal units' part of a cost (unquantised); images of a kind the sheet has no price for
    cost nothing here (the route stage refuses such requests before they are sent)."""
    total = ZERO
    if usage.images and (each := sheet.image_price(image_kind)) is not None:
        total += each * usage.images
    if usage.audio_ms and sheet.per_audio_second is not None:
        total += sheet.per_audio_second * usage.audio_ms / MS_PER_SECOND
    if usage.characters and sheet.per_1m_characters is not None:
        total += sheet.per_1m_characters * usage.characters / MILLION
    if usage.documents:
        if sheet.per_document is not None:
            total += sheet.per_document * usage.documents
        if sheet.per_search_unit is not None:
            total += sheet.per_search_unit * search_units(usage.documents)
    return total


def price(sheet: PriceSheet, usage: Usage, served: bool = True, image_kind: str | None = None) -> Decimal:
    """Cost of one request in USD, quantised. Requests not served by the upstream cost nothing."""
    if not served:
        return ZERO
    total = token_cost(sheet, usage) + unit_cost(sheet, usage, image_kind)
    if sheet.per_request is not None:
        total += sheet.per_request
    if sheet.per_item is not None:
        total += sheet.per_item * usage.items
    if sheet.compute is not None:
        total += compute_cost(sheet.compute, usage.upstream_seconds)
    return quantize(total)
