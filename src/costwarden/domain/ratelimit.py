"""Rate limits as GCRA (a token bucket kept as one timestamp): L units per T seconds admit at most
L + (b - a) * L / T units in any interval [a, b]. Also their OpenAI-style response headers, and
concurrency quotas as a pure semaphore with a bounded wait queue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

# A Unix time as a float resolves to about 2.4e-7 s (2025), and each admitted unit adds one
# rounding of that size to the arrival time. The slack covers `limit` such roundings, capped at
# half a unit, so the float never costs (or gives) a whole unit. `tolerance` is the one rule;
# redis_scripts/prelude.lua copies it.
_ULP_BOUND = 2.0**-51  # relative: math.ulp(x) <= |x| * 2**-51


def tolerance(limit: RateLimit, now: float) -> float:
    """Seconds of float slack when comparing arrival times near `now` (Unix seconds)."""
    return min(limit.interval / 2, max(1e-9, limit.limit * abs(now) * _ULP_BOUND))


class RateLimitError(ValueError):
    """A limit that cannot be enforced: non-positive limit or period."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`limit` units per `period` seconds (e.g. 60 requests per 60 s)."""

    limit: int
    period: float = 60.0

    def __post_init__(self) -> None:
        if self.limit <= 0 or self.period <= 0:
            raise RateLimitError(f"a rate limit needs a positive limit and period, got {self.limit}/{self.period}s")

    @property
    def interval(self) -> float:
        """Seconds of capacity one unit takes (the GCRA emission interval)."""
        return self.period / self.limit


@dataclass(frozen=True, slots=True)
class RateState:
    """The theoretical arrival time (Unix seconds): when the bucket is full again. 0: never used."""

    tat: float = 0.0


@dataclass(frozen=True, slots=True)
class RateCheck:
    """The outcome of one check. `state` is unchanged when refused. `remaining` is whole units that
    could still be admitted right now; `reset_seconds` until the bucket is full again;
    `retry_after` seconds until this cost would fit (None when it never can: cost > limit)."""

    allowed: bool
    state: RateState
    remaining: int
    reset_seconds: float
    retry_after: float | None = None


def _view(limit: RateLimit, tat: float, now: float) -> tuple[int, float]:
    backlog = max(0.0, tat - now)
    remaining = math.floor((limit.period - backlog + tolerance(limit, now)) / limit.interval)
    return max(0, min(limit.limit, remaining)), backlog


def check(limit: RateLimit, state: RateState, cost: int, now: float) -> RateCheck:
    """Admit `cost` units at `now` (Unix seconds) if the bucket holds them; take them if so."""
    tat = max(state.tat, now) + cost * limit.interval
    if tat - now <= limit.period + tolerance(limit, now):
        remaining, reset = _view(limit, tat, now)
        return RateCheck(True, RateState(tat), remaining, reset)
    remaining, reset = _view(limit, state.tat, now)
    retry = tat - limit.period - now if cost <= limit.limit else None
    return RateCheck(False, state, remaining, reset, retry)


def peek(limit: RateLimit, state: RateState, now: float) -> RateCheck:
    """The headers' view of a limit without taking anything."""
    remaining, reset = _view(limit, state.tat, now)
    return RateCheck(True, state, remaining, reset)


def adjust(limit: RateLimit, state: RateState, delta: int, now: float) -> RateState:
    """Correct an admitted estimate once the actual is known: take `delta` more units (may be
    negative: a refund). Taking never refuses, so the bucket can go into debt; a refund never
    fills it beyond full."""
    return RateState(max(now, max(state.tat, now) + delta * limit.interval))


def format_duration(seconds: float) -> str:
    """A duration as OpenAI writes it (Go's format, to the millisecond, rounded up): `20ms`,
    `1s`, `1.5s`, `6m0s`, `1h0m0s`."""
    millis = max(0, math.ceil(seconds * 1000 - 1e-6))
    if millis == 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, fraction = divmod(rest, 1000)
    text = f"{whole}.{fraction:03d}".rstrip("0") if fraction else str(whole)
    if hours:
        return f"{hours}h{minutes}m{text}s"
    if minutes:
        return f"{minutes}m{text}s"
    return f"{text}s"


def rate_limit_headers(
    requests: tuple[RateLimit, RateCheck] | None, tokens: tuple[RateLimit, RateCheck] | None
) -> list[tuple[str, str]]:
    """`x-ratelimit-{limit,remaining,reset}-{requests,tokens}` for the binding limit of each kind."""
    headers: list[tuple[str, str]] = []
    for kind, pair in (("requests", requests), ("tokens", tokens)):
        if pair is None:
            continue
        limit, result = pair
        headers.append((f"x-ratelimit-limit-{kind}", str(limit.limit)))
        headers.append((f"x-ratelimit-remaining-{kind}", str(result.remaining)))
        headers.append((f"x-ratelimit-reset-{kind}", format_duration(result.reset_seconds)))
    return headers


def binding(pairs: list[tuple[RateLimit, RateCheck]]) -> tuple[RateLimit, RateCheck] | None:
    """Of several limits of one kind (key, team, deployment), the one to report: a refusal first,
    else the one with the fewest units remaining."""
    if not pairs:
        return None
    return min(pairs, key=lambda pair: (pair[1].allowed, pair[1].remaining))


# Concurrency quotas.


class Slot(StrEnum):
    RUN = "run"  # start now
    WAIT = "wait"  # queued: start when `release` promotes a waiter
    REFUSE = "refuse"  # the queue is full


@dataclass(frozen=True, slots=True)
class ConcurrencyLimit:
    """At most `max_active` requests at once and `max_waiting` queued behind them."""

    max_active: int
    max_waiting: int = 0

    def __post_init__(self) -> None:
        if self.max_active <= 0 or self.max_waiting < 0:
            raise RateLimitError(f"bad concurrency limit {self.max_active} active, {self.max_waiting} waiting")


@dataclass(frozen=True, slots=True)
class SemaphoreState:
    active: int = 0
    waiting: int = 0


def acquire(limit: ConcurrencyLimit, state: SemaphoreState) -> tuple[Slot, SemaphoreState]:
    """A request arrives: run it, queue it, or refuse it."""
    if state.active < limit.max_active and state.waiting == 0:
        return Slot.RUN, SemaphoreState(state.active + 1, state.waiting)
    if state.waiting < limit.max_waiting:
        return Slot.WAIT, SemaphoreState(state.active, state.waiting + 1)
    return Slot.REFUSE, state


def release(state: SemaphoreState) -> tuple[SemaphoreState, bool]:
    """A running request ends. True when a waiter takes its place (wake the oldest)."""
    if state.waiting:
        return SemaphoreState(state.active, state.waiting - 1), True
    return SemaphoreState(max(0, state.active - 1), 0), False


def abandon(state: SemaphoreState) -> SemaphoreState:
    """A queued request gives up before it was promoted (timeout or client disconnect)."""
    return SemaphoreState(state.active, max(0, state.waiting - 1))
