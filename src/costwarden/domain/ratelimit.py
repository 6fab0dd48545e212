"""Rate limits as GCRA (a token bucket kept as one timestamp): L units per T seconds admit at most
L + (b - a) * L / T units in any interval [a, b]. Also their OpenAI-style response headers, and
concurrency quotas as a pure semaphore with a bounded wait queue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

# Arrival times are kept in integers, so no rounding ever costs (or gives) a unit: whole
# microseconds of Unix time plus a remainder in 1/limit of a microsecond (a unit's interval is
# period/limit, rarely a whole number of microseconds). redis_scripts/prelude.lua does the same
# arithmetic in Lua's doubles, exact while period (µs) x limit stays below 2^53 (e.g. 150 million
# units per minute).


def micros(now: float) -> int:
    """Unix seconds as whole microseconds, rounded to the nearest (prelude.lua rounds alike)."""
    return math.floor(now * 1e6 + 0.5)


class RateLimitError(ValueError):
    """A limit that cannot be enforced: non-positive limit or period."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`limit` units per `period` seconds (e.g. 60 requests per 60 s)."""

    limit: int
    period: float = 60.0
    period_us: int = field(init=False, repr=False, compare=False)  # the period in whole microseconds
    full: int = field(init=False, repr=False, compare=False)  # the period in 1/limit of a microsecond

    def __post_init__(self) -> None:
        period_us = micros(self.period) if self.period > 0 else 0
        if self.limit <= 0 or period_us <= 0:
            raise RateLimitError(f"a rate limit needs a positive limit and period, got {self.limit}/{self.period}s")
        object.__setattr__(self, "period_us", period_us)
        object.__setattr__(self, "full", period_us * self.limit)

    @property
    def interval(self) -> float:
        """Seconds of capacity one unit takes (the GCRA emission interval)."""
        return self.period / self.limit


@dataclass(frozen=True, slots=True)
class RateState:
    """The theoretical arrival time, when the bucket is full again: `tat` microseconds (Unix) plus
    `part` / limit of one. 0: never used."""

    tat: int = 0
    part: int = 0

    @property
    def seconds(self) -> float:
        """The arrival time in Unix seconds (for expiry, not for decisions)."""
        return self.tat / 1e6


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


def _after(limit: RateLimit, state: RateState, units: int, now_us: int) -> RateState:
    """`units` more taken from the bucket at `now_us`: the arrival time moves on by units x interval."""
    tat, part = state.tat, state.part
    if tat < now_us or (tat == now_us and part <= 0):
        tat, part = now_us, 0
    carry, part = divmod(part + units * limit.period_us, limit.limit)
    return RateState(tat + carry, part)


def _backlog(limit: RateLimit, state: RateState, now_us: int) -> int:
    """How far the arrival time is ahead of now, in 1/limit of a microsecond (0 if behind)."""
    return max(0, (state.tat - now_us) * limit.limit + state.part)


def _view(limit: RateLimit, backlog: int) -> tuple[int, float]:
    """Whole units admissible now and the seconds until the bucket is full, from the backlog."""
    room = limit.full - backlog
    remaining = room // limit.period_us if room > 0 else 0
    return min(limit.limit, remaining), backlog / limit.limit / 1e6


def _drained(limit: RateLimit, excess: int) -> float:
    """Seconds until a backlog `excess` over full has drained: whole microseconds, plus one (a
    Unix time as a float may round to the microsecond below)."""
    return (-(-excess // limit.limit) + 1) / 1e6


def wait(limit: RateLimit, state: RateState, cost: int, now: float) -> float:
    """Seconds until `cost` units would fit (for a cost above the limit: if the limit allowed it)."""
    now_us = micros(now)
    excess = _backlog(limit, _after(limit, state, cost, now_us), now_us) - limit.full
    return _drained(limit, excess)


def check(limit: RateLimit, state: RateState, cost: int, now: float) -> RateCheck:
    """Admit `cost` units at `now` (Unix seconds) if the bucket holds them; take them if so."""
    now_us = micros(now)
    taken = _after(limit, state, cost, now_us)
    backlog = _backlog(limit, taken, now_us)
    if backlog <= limit.full:
        remaining, reset = _view(limit, backlog)
        return RateCheck(True, taken, remaining, reset)
    remaining, reset = _view(limit, _backlog(limit, state, now_us))
    retry = _drained(limit, backlog - limit.full) if cost <= limit.limit else None
    return RateCheck(False, state, remaining, reset, retry)


def peek(limit: RateLimit, state: RateState, now: float) -> RateCheck:
    """The headers' view of a limit without taking anything."""
    remaining, reset = _view(limit, _backlog(limit, state, micros(now)))
    return RateCheck(True, state, remaining, reset)


def adjust(limit: RateLimit, state: RateState, delta: int, now: float) -> RateState:
    """Correct an admitted estimate once the actual is known: take `delta` more units (may be
    negative: a refund). Taking never refuses, so the bucket can go into debt; a refund never
    fills it beyond full."""
    now_us = micros(now)
    moved = _after(limit, state, delta, now_us)
    return moved if moved.tat > now_us or (moved.tat == now_us and moved.part > 0) else RateState(now_us, 0)


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
