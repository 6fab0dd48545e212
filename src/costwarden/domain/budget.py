"""Budgets: a limit in USD (optionally also tokens, requests) on a scope over a window; the pure
admission, threshold and settle math; reservations (hold a request's maximum cost, settle it to
the actual) and `Ledgerless`, the in-memory reference model of the shared counter store.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import assert_never

from costwarden.domain.money import MILLION, ZERO, format_usd, quantize
from costwarden.domain.pricing import PriceSheet, compute_cost, unit_cost
from costwarden.domain.usage import NO_USAGE, Usage
from costwarden.domain.window import Window

SCOPE_DIMENSIONS: tuple[str, ...] = ("deployment", "team", "project", "environment", "key_id")
TAG_PREFIX = "tag."  # `tag.cost_center` scopes on a ledger tag
DEFAULT_THRESHOLDS: tuple[int, ...] = (50, 80, 100)
HUNDRED = Decimal(100)
SECONDS_PER_HOUR = Decimal(3600)


class BudgetError(ValueError):
    """A budget definition that cannot be enforced; the message says which field."""


@dataclass(frozen=True, slots=True)
class BudgetScope:
    """What a budget covers: `(dimension, value)` pairs, all of which must match. Empty: everything."""

    dimensions: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        names = [name for name, _ in self.dimensions]
        for name in names:
            if name not in SCOPE_DIMENSIONS and not (name.startswith(TAG_PREFIX) and len(name) > len(TAG_PREFIX)):
                allowed = ", ".join((*SCOPE_DIMENSIONS, TAG_PREFIX + "<name>"))
                raise BudgetError(f"unknown scope dimension {name!r}; use {allowed}")
        if len(set(names)) != len(names):
            raise BudgetError(f"a scope names each dimension once: {names}")
        object.__setattr__(self, "dimensions", tuple(sorted(self.dimensions)))

    @classmethod
    def of(cls, dimensions: Mapping[str, str]) -> BudgetScope:
        return cls(tuple(dimensions.items()))

    def matches(self, attributes: Mapping[str, str | None]) -> bool:
        """True when every dimension of the scope equals the request's attribute of that name."""
        return all(attributes.get(name) == value for name, value in self.dimensions)

    def __str__(self) -> str:
        return ",".join(f"{name}={value}" for name, value in self.dimensions) or "*"


def request_attributes(
    key_id: str | None,
    team: str | None,
    project: str | None,
    environment: str | None,
    deployment: str | None,
    tags: Mapping[str, str],
) -> dict[str, str | None]:
    """The attributes a scope is matched against, named as in the ledger (tags as `tag.<name>`)."""
    attributes: dict[str, str | None] = {TAG_PREFIX + name: value for name, value in tags.items()}
    attributes.update(key_id=key_id, team=team, project=project, environment=environment, deployment=deployment)
    return attributes


class Action(StrEnum):
    """What a budget does as it fills. Every use matches on it exhaustively (`match` with
    `assert_never`), so a new member fails type checking wherever it is not handled instead of
    silently acting as another."""

    BLOCK = "block"  # refuse a request that would take the budget past its limit
    ALERT_ONLY = "alert_only"  # count and alert, never refuse
    DEGRADE = "degrade"  # move eligible requests to a cheaper variant past a threshold; never refuse
    QUEUE = "queue"  # a request it would refuse is queued as a job (202) instead, when it can be


class FailMode(StrEnum):
    """Whether requests pass (open) or are refused (closed) while the counter store is unreachable."""

    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Amount:
    """A quantity a budget limits: USD (quantised Decimal), tokens and requests."""

    usd: Decimal = ZERO
    tokens: int = 0
    requests: int = 0

    def __add__(self, other: Amount) -> Amount:
        return Amount(quantize(self.usd + other.usd), self.tokens + other.tokens, self.requests + other.requests)

    def __sub__(self, other: Amount) -> Amount:
        """Difference, floored at zero in each unit (a release never makes a counter negative)."""
        return Amount(
            max(ZERO, quantize(self.usd - other.usd)),
            max(0, self.tokens - other.tokens),
            max(0, self.requests - other.requests),
        )


NOTHING = Amount()


@dataclass(frozen=True, slots=True)
class Budget:
    """A limit on the spend of `scope` in each instance of `window`. Thresholds are percentages."""

    id: str
    scope: BudgetScope
    window: Window
    limit_usd: Decimal
    limit_tokens: int | None = None
    limit_requests: int | None = None
    thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS
    action: Action = Action.BLOCK
    fail_mode: FailMode = FailMode.OPEN
    # action queue: keys and teams whose requests are refused (429) rather than queued
    queue_exempt: frozenset[str] = frozenset()  # `key:<id>` and `team:<name>`
    # `include_compute`: the replicas of the deployments in scope cost this much an hour, counted as
    # spent from the window's start (see `compute_usd`; docs/compute.md, "Compute cost in budgets").
    compute_usd_per_hour: Decimal = ZERO

    def __post_init__(self) -> None:
        if not self.id:
            raise BudgetError("a budget needs an id")
        if self.compute_usd_per_hour < ZERO:
            raise BudgetError(f"budget {self.id!r}: compute_usd_per_hour is negative")
        if self.limit_usd <= ZERO:
            raise BudgetError(f"budget {self.id!r}: limit_usd must be positive, got {self.limit_usd}")
        for name, limit in (("limit_tokens", self.limit_tokens), ("limit_requests", self.limit_requests)):
            if limit is not None and limit <= 0:
                raise BudgetError(f"budget {self.id!r}: {name} must be positive, got {limit}")
        if any(t <= 0 for t in self.thresholds) or len(set(self.thresholds)) != len(self.thresholds):
            raise BudgetError(f"budget {self.id!r}: thresholds must be distinct positive percentages")
        object.__setattr__(self, "thresholds", tuple(sorted(self.thresholds)))

    def queues_for(self, key_id: str, team: str) -> bool:
        """Whether a request of this key and team may be queued (not exempt from `queue`)."""
        return not self.queue_exempt or not ({f"key:{key_id}", f"team:{team}"} & self.queue_exempt)
    def compute_usd(self, now: float) -> Decimal:
        """Replica cost accrued in the window instance at `now`: the hourly rate x the time since the
        window (or a rolling window's oldest bucket) started, exact, rounded to the ledger's nano-dollar.
        A pure function of the config and the clock: the same on every replica and after a restart."""
        if not self.compute_usd_per_hour:
            return ZERO
        start = self.window.bounds(now)[0]
        return quantize(self.compute_usd_per_hour * Decimal(max(0.0, now - start)) / SECONDS_PER_HOUR)

    def limits(self) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
        """The limits in the order of `UNITS`; None where the unit is not limited."""
        tokens, requests = self.limit_tokens, self.limit_requests
        return (
            self.limit_usd,
            None if tokens is None else Decimal(tokens),
            None if requests is None else Decimal(requests),
        )


@dataclass(frozen=True, slots=True)
class BudgetState:
    """One window's counters: settled spend and the holds of requests still in flight."""

    spent: Amount = NOTHING
    reserved: Amount = NOTHING

    @property
    def used(self) -> Amount:
        return self.spent + self.reserved

    def reserve(self, amount: Amount) -> BudgetState:
        return BudgetState(self.spent, self.reserved + amount)

    def release(self, amount: Amount) -> BudgetState:
        return BudgetState(self.spent, self.reserved - amount)

    def settle(self, held: Amount, actual: Amount) -> BudgetState:
        """Replace a hold by the actual consumption. `held` is NOTHING when the hold had expired."""
        return BudgetState(self.spent + actual, self.reserved - held)


EMPTY = BudgetState()


UNITS: tuple[str, ...] = ("usd", "tokens", "requests")


def _units(amount: Amount) -> tuple[Decimal, Decimal, Decimal]:
    return amount.usd, Decimal(amount.tokens), Decimal(amount.requests)


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict of one budget on one request.

    `action` is the action the budget's limit triggered (None while within the limit); `reason` names
    the exceeded unit (`usd`, `tokens`, `requests`) or `state_store_unreachable`. `reset_at` is Unix
    seconds; `retry_after` whole seconds until then (0 when admitted).
    """

    budget_id: str
    admitted: bool
    action: Action | None
    reason: str | None
    reset_at: float
    retry_after: int
    message: str = ""


def _exceeded(budget: Budget, state: BudgetState, estimate: Amount) -> str | None:
    # Refuse when the settled spend already reached the limit, or when this request's maximum on
    # top of everything spent and held could pass it.
    for unit, limit, spent, used, wanted in zip(
        UNITS, budget.limits(), _units(state.spent), _units(state.used), _units(estimate), strict=True
    ):
        if limit is not None and (spent >= limit or used + wanted > limit):
            return unit
    return None


def _retry_after(reset_at: float, now: float) -> int:
    return max(1, math.ceil(reset_at - now))


def _explain(budget: Budget, state: BudgetState, unit: str, reset_at: float) -> str:
    index = UNITS.index(unit)
    spent, used, limit = _units(state.spent)[index], _units(state.used)[index], budget.limits()[index]
    if unit == "usd":
        detail = f"{format_usd(spent)} spent, {format_usd(used - spent)} in flight, of {format_usd(budget.limit_usd)}"
    else:
        detail = f"{spent} {unit} used, {used - spent} in flight, of {limit}"
    when = "its oldest spend ages out" if budget.window.rolling_seconds is not None else "it resets"
    return (
        f"budget {budget.id!r} ({budget.scope}; {budget.window.describe()}) is exhausted: {detail};"
        f" {when} at {budget.window.local(reset_at)}"
    )


def admit(budget: Budget, state: BudgetState, estimate: Amount, now: float) -> Decision:
    """May a request whose maximum consumption is `estimate` start at `now` (Unix seconds)?"""
    reset_at = budget.window.reset_at(now)
    unit = _exceeded(budget, state, estimate)
    if unit is None:
        return Decision(budget.id, True, None, None, reset_at, 0)
    message = _explain(budget, state, unit, reset_at)
    match budget.action:
        case Action.BLOCK | Action.QUEUE:  # queue: refused now, the chain turns it into a job
            return Decision(budget.id, False, budget.action, unit, reset_at, _retry_after(reset_at, now), message)
        case Action.ALERT_ONLY | Action.DEGRADE:
            return Decision(budget.id, True, budget.action, unit, reset_at, 0, message)
        case _:
            assert_never(budget.action)


def unreachable(budget: Budget, now: float) -> Decision:
    """The decision when the counter store cannot be read: the budget's fail mode decides."""
    reset_at = budget.window.reset_at(now)
    open_ = budget.fail_mode is FailMode.OPEN
    message = "" if open_ else f"budget {budget.id!r} cannot be checked: the budget store is unreachable"
    return Decision(budget.id, open_, None, "state_store_unreachable", reset_at, 0 if open_ else 1, message)


def first_refusal(decisions: Iterable[Decision]) -> Decision | None:
    """The refusal to report when several budgets apply: the one that resets last, as the request
    cannot pass before then."""
    refused = [d for d in decisions if not d.admitted]
    return max(refused, key=lambda d: d.reset_at) if refused else None


def utilisation(budget: Budget, state: BudgetState) -> Decimal:
    """Settled spend as a fraction of the limit, the highest over the limited units (1 = 100 %)."""
    limited = zip(budget.limits(), _units(state.spent), strict=True)
    return max(spent / limit for limit, spent in limited if limit is not None)


def remaining_usd(budget: Budget, state: BudgetState) -> Decimal:
    """USD that requests may still reserve in this window (never negative)."""
    return max(ZERO, budget.limit_usd - state.used.usd)


def crossed_thresholds(budget: Budget, before: BudgetState, after: BudgetState) -> tuple[int, ...]:
    """The threshold percentages settled spend reached between `before` and `after`, ascending."""

    def reached(state: BudgetState, percent: int) -> bool:
        return any(
            limit is not None and spent * HUNDRED >= limit * percent
            for limit, spent in zip(budget.limits(), _units(state.spent), strict=True)
        )

    return tuple(t for t in budget.thresholds if reached(after, t) and not reached(before, t))


# Reservations: hold a request's maximum cost before forwarding, settle to the actual after.


@dataclass(frozen=True, slots=True)
class Reservation:
    """A hold of `amount` on each budget in `budget_ids`, in the counter `window_keys[i]` of budget
    `budget_ids[i]` (its window's key at reservation time). Released at `expires_at` (Unix seconds)
    if never settled, so a dead gateway cannot leave phantom holds."""

    id: str
    budget_ids: tuple[str, ...]
    window_keys: tuple[str, ...]
    amount: Amount
    expires_at: float

    @property
    def counters(self) -> tuple[str, ...]:
        return tuple(counter_key(b, k) for b, k in zip(self.budget_ids, self.window_keys, strict=True))


def counter_key(budget_id: str, window_key: str) -> str:
    """The id of one budget's counter for one window instance (or rolling bucket)."""
    return f"{budget_id}|{window_key}"


def seed_key(budget: Budget) -> str:
    """What a budget's counters count: its id, scope and window. A budget whose scope or window
    changes gets new counters, seeded afresh from the ledger; a new limit keeps them."""
    digest = hashlib.blake2s(f"{budget.scope}\n{budget.window.spec}".encode(), digest_size=4).hexdigest()
    return f"{budget.id}#{digest}"


def counter_spans(budget: Budget, now: float) -> tuple[tuple[str, float, float | None], ...]:
    """The counters of the budget's window at `now` and the time each covers, [start, end) in Unix
    seconds (end None: open, the current window or bucket): what a rebuild reads from the ledger."""
    seed, window = seed_key(budget), budget.window
    if window.rolling_seconds is None:
        return ((counter_key(seed, window.key(now)), window.bounds(now)[0], None),)
    width = window.rolling_seconds // window.buckets
    current = math.floor(now) // width
    return tuple(
        (counter_key(seed, key), float(index * width), None if index == current else float((index + 1) * width))
        for index, key in enumerate(window.bucket_keys(now), current - window.buckets + 1)
    )


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """A request's maximum cost in USD and tokens; `bounded` when it is a true upper bound."""

    usd: Decimal
    tokens: int
    bounded: bool


def estimate_max_cost(
    sheet: PriceSheet,
    input_tokens: int,
    max_output_tokens: int | None,
    items: int = 0,
    p99_seconds: float | None = None,
    cap: Decimal | None = None,
    units: Usage = NO_USAGE,
    image_kind: str | None = None,
) -> CostEstimate:
    """The most a request can cost under `sheet`, in USD (quantised).

    `input_tokens` must itself be an upper bound (e.g. the UTF-8 length of the prompt). Output is
    bounded only by `max_output_tokens`; compute time is estimated from the deployment's observed
    p99 (seconds). An unbounded estimate is raised to `cap`, the deployment's per-request maximum.
    """
    input_price = max(sheet.input_per_1m or ZERO, sheet.cached_input_per_1m or ZERO)
    total = input_tokens * input_price / MILLION
    bounded = True
    if sheet.output_per_1m:
        if max_output_tokens is None:
            bounded = False
        else:
            total += max_output_tokens * sheet.output_per_1m / MILLION
    total += (sheet.per_request or ZERO) + (sheet.per_item or ZERO) * items
    total += unit_cost(sheet, units, image_kind)  # the modal units the request asks for (images, characters, ...)
    if sheet.compute is not None:
        bounded = False  # a p99 is not a maximum
        if p99_seconds is not None:
            total += compute_cost(sheet.compute, p99_seconds)
    usd = quantize(total)
    if not bounded and cap is not None:
        usd = max(usd, cap)
    return CostEstimate(usd, input_tokens + (max_output_tokens or 0), bounded)


@dataclass(frozen=True, slots=True)
class Ledgerless:
    """The reference model of the shared counter store, in memory: what an adapter (Redis, SQL)
    must do atomically per operation. Every operation first releases expired holds."""

    budgets: tuple[Budget, ...]
    counters: Mapping[str, BudgetState] = field(default_factory=dict)
    holds: Mapping[str, Reservation] = field(default_factory=dict)

    def state(self, budget: Budget, now: float) -> BudgetState:
        """The budget's window at `now`: the sum of its bucket counters."""
        total = BudgetState()
        for key in budget.window.bucket_keys(now):
            part = self.counters.get(counter_key(budget.id, key), EMPTY)
            total = BudgetState(total.spent + part.spent, total.reserved + part.reserved)
        return total

    def reserve(
        self, reservation_id: str, attributes: Mapping[str, str | None], estimate: Amount, now: float, ttl: float
    ) -> tuple[Ledgerless, Reservation | None, tuple[Decision, ...]]:
        """Hold `estimate` on every matching budget if all admit it; otherwise change nothing."""
        book = self.expire(now)
        matched = [b for b in book.budgets if b.scope.matches(attributes)]
        decisions = tuple(admit(b, book.state(b, now), estimate, now) for b in matched)
        if not all(d.admitted for d in decisions):
            return book, None, decisions
        held = Reservation(
            reservation_id, tuple(b.id for b in matched), tuple(b.window.key(now) for b in matched), estimate, now + ttl
        )
        counters = dict(book.counters)
        for key in held.counters:
            counters[key] = counters.get(key, EMPTY).reserve(estimate)
        return Ledgerless(book.budgets, counters, {**book.holds, held.id: held}), held, decisions

    def settle(self, held: Reservation, actual: Amount, now: float) -> Ledgerless:
        """Charge `actual` where `held` was reserved, releasing the hold if it has not expired."""
        book = self.expire(now)
        live = held.id in book.holds
        counters = dict(book.counters)
        for key in held.counters:
            counters[key] = counters.get(key, EMPTY).settle(held.amount if live else NOTHING, actual)
        holds = {k: v for k, v in book.holds.items() if k != held.id}
        return Ledgerless(book.budgets, counters, holds)

    def expire(self, now: float) -> Ledgerless:
        """Release the holds whose `expires_at` is at or before `now`."""
        expired = [h for h in self.holds.values() if h.expires_at <= now]
        if not expired:
            return self
        counters = dict(self.counters)
        for hold in expired:
            for key in hold.counters:
                counters[key] = counters.get(key, EMPTY).release(hold.amount)
        holds = {k: v for k, v in self.holds.items() if v.expires_at > now}
        return Ledgerless(self.budgets, counters, holds)
