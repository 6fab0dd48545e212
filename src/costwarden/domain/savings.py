"""What the cost actions saved, from ledger records: by team and action, exactly (Decimal USD).

A record saved money when it carries what the original would have cost: `original_cost_usd`
for the `degrade` action (the request was moved to a cheaper variant), `cache_avoided_usd` for
the `cache` action (it was answered from the response cache, at no cost), and `original_cost_usd`
on a batch job's record for the `batch` action (a Batch API line, or a realtime request the `queue`
action or `X-Costwarden-Priority: batch` queued: run at the batch price multiplier; what it would
have cost as a realtime request, on the deployment asked for even if a degrade budget moved it).
Savings are that minus what the request cost; a degraded request that the original served (its
variant was down) saved nothing and is still counted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from costwarden.domain.money import ZERO
from costwarden.domain.record import UsageRecord

DEGRADE = "degrade"
CACHE = "cache"
BATCH = "batch"


@dataclass(frozen=True, slots=True)
class SavingsRow:
    team: str | None  # None: the total
    action: str | None
    requests: int = 0
    fallbacks: int = 0  # degraded requests the original served (the variant was down)
    cost_usd: Decimal = ZERO  # what they cost
    original_cost_usd: Decimal = ZERO  # what they would have cost without the action

    @property
    def saved_usd(self) -> Decimal:
        return self.original_cost_usd - self.cost_usd

    def add(self, record: UsageRecord, original: Decimal) -> SavingsRow:
        fell_back = self.action == DEGRADE and record.variant is None
        return SavingsRow(
            self.team,
            self.action,
            self.requests + 1,
            self.fallbacks + fell_back,
            self.cost_usd + record.cost_usd,
            self.original_cost_usd + original,
        )


def action_of(record: UsageRecord) -> tuple[str, Decimal] | None:
    """The cost action that served a record, if any, and what the record would have cost without it."""
    avoided = record.cache_avoided_usd if record.cache is not None else None
    return acted(avoided, record.batch_id, record.original_cost_usd)


def acted(cache_avoided: Decimal | None, batch_id: str | None, original: Decimal | None) -> tuple[str, Decimal] | None:
    """The action and the cost without it, from a request's `cache_avoided_usd` (a cache hit's),
    `batch_id` and `original_cost_usd`. A cache hit is the cache's saving even when its deployment
    was degraded; a batch job's is the batch's (its saving includes a degrade's, if a budget moved
    it too)."""
    if cache_avoided is not None:
        return CACHE, cache_avoided
    if original is None:
        return None
    if batch_id is not None:
        return BATCH, original
    return DEGRADE, original


@dataclass(slots=True)
class SavingsBook:
    """Savings accumulated one record at a time (records are read a page at a time)."""

    rows: dict[tuple[str | None, str], SavingsRow]

    @classmethod
    def empty(cls) -> SavingsBook:
        return cls({})

    def add(self, records: Iterable[UsageRecord]) -> None:
        for record in records:
            found = action_of(record)
            if found is None:
                continue
            action, original = found
            key = (record.team, action)
            row = self.rows.get(key) or SavingsRow(record.team, action)
            self.rows[key] = row.add(record, original)

    def sorted_rows(self) -> list[SavingsRow]:
        """By money saved, most first (then team, action)."""
        return sorted(self.rows.values(), key=lambda r: (-r.saved_usd, r.team or "", r.action or ""))

    def total(self) -> SavingsRow:
        total = SavingsRow(None, None)
        for row in self.rows.values():
            total = SavingsRow(
                None,
                None,
                total.requests + row.requests,
                total.fallbacks + row.fallbacks,
                total.cost_usd + row.cost_usd,
                total.original_cost_usd + row.original_cost_usd,
            )
        return total
