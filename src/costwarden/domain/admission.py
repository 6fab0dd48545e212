"""What the admit stage asks the shared counter store, and what it answers.

One `AdmissionRequest` carries every check of one request (budgets, rate limits, concurrency
slots), so a store can decide all of them atomically in one round trip. Money in USD (Decimal),
times in Unix seconds. A store decides with exactly the rules of `domain.budget.admit`,
`domain.ratelimit.check` and the concurrency model, so the in-process store is the reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum

from costwarden.domain.budget import Amount, BudgetState
from costwarden.domain.money import NANO


def nanos(usd: Decimal, rounding: str) -> int:
    """USD as whole nano-dollars, rounded as told where it is finer than that (a limit rounds down
    and an estimate up, so integer units never admit what the Decimal rule refuses)."""
    return int(usd.quantize(NANO, rounding=rounding).scaleb(9))


def next_generation(current: int, now: float) -> int:
    """The budget definitions' generation after a change announced at `now` (Unix seconds): the
    change's millisecond, or one more than `current` if that is not above it. Never one used before,
    even after the store lost its generation (0), while clocks go forward."""
    return max(current + 1, math.floor(now * 1000))


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
    # The limits in integer units (USD in whole nano-dollars, rounded down), derived once: a check
    # is cached while its window lasts, so the stores decide with ints, not Decimals per request.
    limits: tuple[int | None, int | None, int | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        usd, tokens, requests = self.limit_usd, self.limit_tokens, self.limit_requests
        limits = (
            None if usd is None else nanos(usd, ROUND_FLOOR),
            None if tokens is None else int(tokens),
            None if requests is None else int(requests),
        )
        object.__setattr__(self, "limits", limits)


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
    # The generation of the budget definitions the checks were planned with (None: not checked). A
    # store whose generation differs refuses first (`Refused.STALE`), applying nothing: the caller
    # reloads the definitions and plans again, so a budget changed anywhere applies at once.
    generation: int | None = None
    # `estimate` in integer units (USD in whole nano-dollars, rounded up): what the stores hold.
    units: tuple[int, int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        estimate = self.estimate
        object.__setattr__(self, "units", (nanos(estimate.usd, ROUND_CEILING), estimate.tokens, estimate.requests))


class Refused(StrEnum):
    """Which kind of check refused an admission."""

    STALE = "stale"  # the request was planned with other budget definitions than the store's: first of all
    UNSEEDED = "unseeded"  # the budget's counters are not seeded: comes before any other refusal
    BUDGET = "budget"
    RATE = "rate"
    SLOT = "slot"


@dataclass(frozen=True, slots=True)
class Refusal:
    """The first check that refused: its kind, its position in the request's `budgets` (budget and
    unseeded), `rates` or `slots`, and its name (the budget id or the rate/slot key). A value,
    so no caller parses a `kind:name` string back; `str()` gives that form for messages and logs."""

    kind: Refused
    index: int
    name: str

    @classmethod
    def of(cls, request: AdmissionRequest, kind: Refused, index: int) -> Refusal:
        """The refusal of check `index` (0-based) of `kind` in `request`."""
        if kind is Refused.STALE:
            return cls(kind, 0, "budget definitions")
        if kind is Refused.BUDGET or kind is Refused.UNSEEDED:
            return cls(kind, index, request.budgets[index].budget_id)
        checks = request.rates if kind is Refused.RATE else request.slots
        return cls(kind, index, checks[index].key)

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


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
    the request's budgets; `refused_by` is the first check that refused (a budget, rate or slot),
    or an unseeded budget (its counters were never rebuilt, or the store lost its state): that
    comes before any other refusal. A request planned with stale budget definitions is refused
    before anything is checked (`Refused.STALE`, every tuple empty); `generation` is then the
    store's.
    """

    admitted: bool
    refused_by: Refusal | None
    budget_states: tuple[BudgetState, ...]
    rates: tuple[RateOutcome, ...]
    active_slots: tuple[int, ...]
    generation: int | None = None

    @classmethod
    def stale(cls, request: AdmissionRequest, generation: int) -> AdmissionResult:
        return cls(False, Refusal.of(request, Refused.STALE, 0), (), (), (), generation)


@dataclass(frozen=True, slots=True)
class Settlement:
    """Charge `actual` where the reservation held its estimate; release its slots.

    `token_correction` adjusts token-rate counters by (actual - estimated) tokens, per rate key.
    `caught_up_keys`: write counters of new budgets whose catch-up reads this request from the
    ledger too (it started before their cutoff): the store charges it there as everywhere, and
    notes the charge (`pre`), which the catch-up leaves out of the ledger's figure.
    Settling a reservation twice, or after it expired, never double-counts the hold.
    """

    reservation_id: str
    budget_write_keys: tuple[str, ...]
    held: Amount
    actual: Amount
    slot_keys: tuple[str, ...] = ()
    token_corrections: tuple[tuple[str, int], ...] = ()
    caught_up_keys: tuple[str, ...] = ()


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
    ledger. Then the budget admits again. A store keeps, per counter, the highest ledger figure it
    was given (`seen`).

    `catch_up`: the figures are the ledger's records of requests started before every replica held
    on this (new) budget; a counter gains what a figure, less the charges settles noted as caught
    up (`Settlement.caught_up_keys`), has beyond its `seen` (spend no settle charged that reached
    the ledger since), whoever sends it and however often. It does not mark the budget seeded.
    `seen` is kept net of those noted charges for every seed."""

    seed_key: str
    counters: tuple[CounterSeed, ...]
    catch_up: bool = False
