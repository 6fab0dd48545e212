"""What the admit stage asks the shared counter store, and what it answers.

One `AdmissionRequest` carries every check of one request (budgets, rate limits, concurrency
slots), so a store can decide all of them atomically in one round trip. Money in USD (Decimal),
times in Unix seconds. A store decides with exactly the rules of `domain.budget.admit`,
`domain.ratelimit.check` and the concurrency model, so the in-process store is the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from costwarden.domain.budget import Amount, BudgetState


@dataclass(frozen=True, slots=True)
class BudgetCheck:
    """Hold `estimate` on one budget's current window unless it would pass a limit.

    `read_keys` are the counters summed for the window (one for a calendar window, the buckets of a
    rolling one); `write_key` is where the hold and the spend go; `retain_until` is when the
    counters may be dropped. A limit of None is not checked. `enforce` False (alert_only) holds
    and counts but never refuses. `seed_key` (domain.budget.seed_key) names the budget's counters
    as a whole: a store admits nothing on them until a rebuild has seeded them from the ledger.
    """

    budget_id: str
    read_keys: tuple[str, ...]
    write_key: str
    limit_usd: Decimal | None
    limit_tokens: Decimal | None
    limit_requests: Decimal | None
    enforce: bool
    retain_until: float
    seed_key: str


@dataclass(frozen=True, slots=True)
class RateCheck:
    """GCRA: at most `limit` units per `period` seconds for `key`; this request costs `cost` units."""

    key: str
    limit: int
    period: float
    cost: int


@dataclass(frozen=True, slots=True)
class SlotCheck:
    """Take one of `max_active` concurrency slots under `key` (a lease released on settle or expiry)."""

    key: str
    max_active: int


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    reservation_id: str
    estimate: Amount
    expires_at: float  # holds and slot leases are released at this time if never settled
    budgets: tuple[BudgetCheck, ...] = ()
    rates: tuple[RateCheck, ...] = ()
    slots: tuple[SlotCheck, ...] = ()


@dataclass(frozen=True, slots=True)
class RateOutcome:
    key: str
    allowed: bool
    remaining: int
    reset_seconds: float
    retry_after: float


@dataclass(frozen=True, slots=True)
class AdmissionResult:
    """`admitted` is all-or-nothing: when False, nothing was held, counted or leased.

    `budget_states` are the states the decision saw (before this request's hold), in the order of
    the request's budgets; `refused_by` names the first check that refused (`budget:<id>`,
    `rate:<key>` or `slot:<key>`), or `unseeded:<id>` when a budget's counters are not seeded
    (never rebuilt, or the store lost its state): that comes before any other refusal.
    """

    admitted: bool
    refused_by: str | None
    budget_states: tuple[BudgetState, ...]
    rates: tuple[RateOutcome, ...]
    active_slots: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Settlement:
    """Charge `actual` where the reservation held its estimate; release its slots.

    `token_correction` adjusts token-rate counters by (actual - estimated) tokens, per rate key.
    Settling a reservation twice, or after it expired, never double-counts the hold.
    """

    reservation_id: str
    budget_write_keys: tuple[str, ...]
    held: Amount
    actual: Amount
    slot_keys: tuple[str, ...] = ()
    token_corrections: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class CounterSeed:
    """The ledger's figure for one counter: what was charged in its span (requests admission
    charges: refusals excluded), and when the counter may be dropped."""

    key: str
    ledger: Amount
    retain_until: float


@dataclass(frozen=True, slots=True)
class BudgetSeed:
    """Seed (or re-seed) one budget's counters from the ledger. A store never lowers a counter: a
    seeded counter becomes max(counter, ledger) per unit; one that was not seeded (created by a
    settle after the store lost its state) holds only what settled since, so it becomes counter +
    ledger. Then the budget admits again."""

    seed_key: str
    counters: tuple[CounterSeed, ...]
