"""FOCUS 1.0 billing rows from ledger records: the hourly charge key, its totals, the column mapping.

One row per (hour, team, project, environment, deployment, protocol, pricing basis, outcome).
Pure: records in (newest first, as the ledger pages them), finished hours out; money stays Decimal,
so the rows' BilledCost sums to the ledger's total to the nano-dollar.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import orjson

from costwarden.domain.money import ZERO
from costwarden.domain.record import NOT_ERRORS, UsageRecord
from costwarden.domain.rollup import HOUR, bucket_start

# The FOCUS 1.0 columns, in the spec's order, then the columns focus-validator 1.0.0 still requires
# under their pre-1.0 names (ChargeType, InvoiceIssuer, Provider, Publisher, ResourceID), then ours (x_).
FOCUS_COLUMNS: tuple[str, ...] = (
    "AvailabilityZone",
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "SkuId",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "Tags",
)
VALIDATOR_COLUMNS: tuple[str, ...] = ("ChargeType", "InvoiceIssuer", "Provider", "Publisher", "ResourceID")
EXTRA_COLUMNS: tuple[str, ...] = (
    "x_Requests",
    "x_Errors",
    "x_InputTokens",
    "x_OutputTokens",
    "x_CachedTokens",
    "x_Items",
    "x_ReasoningTokens",
    "x_Images",
    "x_AudioMilliseconds",
    "x_Characters",
    "x_Documents",
    "x_Protocol",
    "x_Outcome",
    "x_PricingBasis",
)
COLUMNS: tuple[str, ...] = (*FOCUS_COLUMNS, *VALIDATOR_COLUMNS, *EXTRA_COLUMNS)
DECIMAL_COLUMNS = frozenset(
    {"BilledCost", "ConsumedQuantity", "ContractedCost", "ContractedUnitPrice", "EffectiveCost", "ListCost"}
    | {"ListUnitPrice", "PricingQuantity"}
)
DATETIME_COLUMNS = frozenset({"BillingPeriodEnd", "BillingPeriodStart", "ChargePeriodEnd", "ChargePeriodStart"})
INTEGER_COLUMNS = frozenset(EXTRA_COLUMNS[:11])
UNIT_PRICE = Decimal("0.000000000001")  # a unit price to the pico-dollar: per-token prices are that small
UNATTRIBUTED = "unattributed"
RESOURCE_TYPES = {"openai": "OpenAI-compatible model", "v2": "Open Inference Protocol V2 model", "http": "HTTP API"}
# What one request of a pricing basis consumes (the first basis of a combination, e.g. tokens+request).
CONSUMED_UNITS = {
    "tokens": "Tokens",
    "item": "Items",
    "compute": "Seconds",
    "request": "Requests",
    "free": "Requests",
    "image": "Images",
    "audio": "Seconds",  # of input audio
    "characters": "Characters",
    "document": "Documents",
    "search_unit": "Documents",  # search units are per request: the documents they were counted from
}

Value = str | Decimal | int | datetime | None
KeyTuple = tuple[str | None, str | None, str | None, str | None, str, str, str]  # ChargeKey's fields


@dataclass(frozen=True, slots=True)
class Issuer:
    """Who bills: the FOCUS provider, publisher and invoice issuer, and the billing account."""

    provider: str = "costwarden"
    billing_account_id: str = "costwarden"
    billing_account_name: str = "costwarden"
    service_name: str = "AI Inference"


@dataclass(frozen=True, slots=True)
class ChargeKey:
    team: str | None
    project: str | None
    environment: str | None
    deployment: str | None
    protocol: str
    basis: str
    outcome: str


@dataclass(slots=True)
class ChargeTotals:
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    items: int = 0
    reasoning_tokens: int = 0
    images: int = 0
    audio_ms: int = 0
    characters: int = 0
    documents: int = 0
    upstream_ms: float = 0.0
    cost: Decimal = ZERO

    def add(self, record: UsageRecord) -> None:
        self.requests += 1
        self.errors += record.outcome.value not in NOT_ERRORS
        self.input_tokens += record.input_tokens
        self.output_tokens += record.output_tokens
        self.cached_tokens += record.cached_tokens
        self.items += record.items
        self.reasoning_tokens += record.reasoning_tokens
        self.images += record.images
        self.audio_ms += record.audio_ms
        self.characters += record.characters
        self.documents += record.documents
        self.upstream_ms += record.upstream_ms or 0.0
        self.cost += record.cost_usd


@dataclass(frozen=True, slots=True)
class Charge:
    """One FOCUS row before mapping: a key's totals over [start, end) (Unix seconds)."""

    start: float
    end: float
    key: ChargeKey
    totals: ChargeTotals


@dataclass(slots=True)
class HourFolder:
    """Folds records, newest first, into hourly charges; emits an hour once an older record shows
    it complete. Memory: the charge keys of one hour. The window [start, end) clips the periods."""

    start: float
    end: float
    _hour: int | None = None
    _hour_end: float = float("-inf")
    _open: dict[KeyTuple, ChargeTotals] = field(default_factory=dict)

    def add(self, records: Iterable[UsageRecord]) -> Iterator[list[Charge]]:
        opened = self._open
        for record in records:
            at = record.started_at
            if not (self._hour is not None and self._hour <= at < self._hour_end):
                if opened:
                    yield self._close()
                    opened = self._open
                self._hour = bucket_start(at, HOUR)
                self._hour_end = self._hour + HOUR
            # A plain tuple is the dict key (about 3x cheaper than a ChargeKey per record).
            key = (record.team, record.project, record.environment, record.deployment, record.protocol,
                   record.pricing_basis, record.outcome.value)
            totals = opened.get(key)
            if totals is None:
                totals = opened[key] = ChargeTotals()
            totals.add(record)

    def finish(self) -> Iterator[list[Charge]]:
        if self._open:
            yield self._close()

    def _close(self) -> list[Charge]:
        assert self._hour is not None
        lo, hi = max(float(self._hour), self.start), min(float(self._hour + HOUR), self.end)
        keyed = {ChargeKey(*key): totals for key, totals in self._open.items()}
        charges = [Charge(lo, hi, key, keyed[key]) for key in sorted(keyed, key=_sort_key)]
        self._open = {}
        return charges


def _sort_key(key: ChargeKey) -> tuple[str, ...]:
    named = ("" if part is None else part for part in (key.team, key.project, key.environment, key.deployment))
    return (*named, key.protocol, key.basis, key.outcome)


def _moment(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def billing_period(ts: float) -> tuple[datetime, datetime]:
    """The UTC calendar month holding `ts`: FOCUS billing periods are the invoice's month."""
    moment = _moment(ts)
    first = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if first.month == 12:
        return first, first.replace(year=first.year + 1, month=1)
    following = first.replace(month=first.month + 1)
    return first, following


def consumed(key: ChargeKey, totals: ChargeTotals) -> tuple[Decimal, str]:
    first = key.basis.split("+")[0]
    unit = CONSUMED_UNITS.get(first, "Requests")
    match unit:
        case "Tokens":
            return Decimal(totals.input_tokens + totals.output_tokens), unit
        case "Items":
            return Decimal(totals.items), unit
        case "Seconds" if first == "audio":
            return Decimal(totals.audio_ms) / 1000, unit
        case "Seconds":
            return Decimal(repr(round(totals.upstream_ms / 1000, 6))), unit
        case "Images":
            return Decimal(totals.images), unit
        case "Characters":
            return Decimal(totals.characters), unit
        case "Documents":
            return Decimal(totals.documents), unit
    return Decimal(totals.requests), unit


def focus_row(charge: Charge, issuer: Issuer) -> dict[str, Value]:
    """The FOCUS columns of one charge (typed: Decimal money, UTC datetimes, None for null)."""
    key, totals = charge.key, charge.totals
    cost = totals.cost
    unit_price = (cost / totals.requests).quantize(UNIT_PRICE) if totals.requests else ZERO
    quantity, unit = consumed(key, totals)
    period_start, period_end = billing_period(charge.start)
    resource = key.deployment
    sku = f"{key.deployment or 'gateway'}/{key.basis}"
    tags = {name: value for name, value in (("team", key.team), ("project", key.project)) if value is not None}
    if key.environment is not None:
        tags["environment"] = key.environment
    description = (
        f"{key.deployment or 'gateway'}: {totals.requests} {key.outcome} {key.protocol} "
        f"request{'s' if totals.requests != 1 else ''}, priced by {key.basis}"
    )
    row: dict[str, Value] = dict.fromkeys(COLUMNS)
    row.update(
        BilledCost=cost,
        BillingAccountId=issuer.billing_account_id,
        BillingAccountName=issuer.billing_account_name,
        BillingCurrency="USD",
        BillingPeriodEnd=period_end,
        BillingPeriodStart=period_start,
        ChargeCategory="Usage",
        ChargeDescription=description,
        ChargeFrequency="Usage-Based",
        ChargePeriodEnd=_moment(charge.end),
        ChargePeriodStart=_moment(charge.start),
        ConsumedQuantity=quantity,
        ConsumedUnit=unit,
        ContractedCost=cost,
        ContractedUnitPrice=unit_price,
        EffectiveCost=cost,
        InvoiceIssuerName=issuer.provider,
        ListCost=cost,
        ListUnitPrice=unit_price,
        PricingCategory="Standard",
        PricingQuantity=Decimal(totals.requests),
        PricingUnit="Requests",
        ProviderName=issuer.provider,
        PublisherName=issuer.provider,
        ResourceId=resource,
        ResourceName=resource,
        ResourceType=RESOURCE_TYPES.get(key.protocol, "Gateway") if resource else None,
        ServiceCategory="AI and Machine Learning",
        ServiceName=issuer.service_name,
        SkuId=sku,
        SkuPriceId=sku,
        SubAccountId=key.team or UNATTRIBUTED,
        SubAccountName=key.team or UNATTRIBUTED,
        Tags=orjson.dumps(tags).decode(),
        ChargeType="Usage",
        InvoiceIssuer=issuer.provider,
        Provider=issuer.provider,
        Publisher=issuer.provider,
        ResourceID=resource,
        x_Requests=totals.requests,
        x_Errors=totals.errors,
        x_InputTokens=totals.input_tokens,
        x_OutputTokens=totals.output_tokens,
        x_CachedTokens=totals.cached_tokens,
        x_Items=totals.items,
        x_ReasoningTokens=totals.reasoning_tokens,
        x_Images=totals.images,
        x_AudioMilliseconds=totals.audio_ms,
        x_Characters=totals.characters,
        x_Documents=totals.documents,
        x_Protocol=key.protocol,
        x_Outcome=key.outcome,
        x_PricingBasis=key.basis,
    )
    return row


def text_cell(value: Value) -> str:
    """A cell as CSV text: decimals fixed-point as exact as computed (money to the nano, unit prices to
    the pico), times ISO 8601 in UTC (Z), null as empty."""
    match value:
        case None:
            return ""
        case datetime():
            return value.strftime("%Y-%m-%dT%H:%M:%SZ") if not value.microsecond else value.isoformat().replace(
                "+00:00", "Z"
            )
        case Decimal():
            # Always with a decimal point: a column of whole numbers still reads as decimal, not integer.
            text = f"{value:f}"
            return text if "." in text else f"{text}.0"
    return str(value)
