"""A circuit breaker around the shared counter store: during an outage, fail fast instead of making
every request wait for its own timeout; under a burst that still gets answers, never trip.

Closed: calls go through. It trips to open after `failures` consecutive calls failed with the store
unreachable (connection error or timeout) AND no call succeeded for `outage_seconds`: a burst
whose slow replies still arrive keeps resetting both. Open: calls raise `CounterStoreCircuitOpen`
at once, so admission applies each budget's fail mode without waiting, for `open_seconds`. Then
half-open: one call at a time is let through as a probe while the others still fail fast; the
probe's success closes the breaker, its failure opens it again. Any other exception (the store
answered, with an error) counts as an answer.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from typing import TypeVar

from costwarden.domain.admission import AdmissionRequest, AdmissionResult, BudgetCheck, BudgetSeed, Settlement
from costwarden.domain.budget import BudgetState
from costwarden.ports import CounterStore, CounterStoreCircuitOpen, CounterStoreUnavailable

T = TypeVar("T")


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CounterBreaker:
    """`CounterStore` that wraps another one with a circuit breaker (see the module docstring).
    `clock` is monotonic seconds; the breaker's own state lives in this process only."""

    def __init__(
        self,
        store: CounterStore,
        failures: int = 3,
        outage_seconds: float = 1.0,
        open_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._failures_to_trip = failures
        self._outage_seconds = outage_seconds
        self._open_seconds = open_seconds
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._last_success = clock()
        self._opened_at = 0.0
        self._probing = False
        self.trips = 0  # times it opened, for metrics

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self._open_seconds:
            return BreakerState.HALF_OPEN
        return self._state

    def _enter(self) -> bool:
        """Whether this call may go to the store, and whether it is the half-open probe."""
        state = self.state
        if state is BreakerState.CLOSED:
            return False
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._state, self._probing = BreakerState.HALF_OPEN, True
            return True
        retry_in = max(0.0, self._opened_at + self._open_seconds - self._clock())
        raise CounterStoreCircuitOpen(f"the counter store failed repeatedly; not asked again for {retry_in:.1f} s")

    def _succeeded(self) -> None:
        self._state, self._failures, self._last_success = BreakerState.CLOSED, 0, self._clock()

    def _failed(self, probe: bool) -> None:
        now = self._clock()
        self._failures += 1
        tripped = self._failures >= self._failures_to_trip and now - self._last_success >= self._outage_seconds
        if probe or (tripped and self._state is BreakerState.CLOSED):
            if not probe:
                self.trips += 1
            self._state, self._opened_at = BreakerState.OPEN, now

    async def _guard(self, call: Callable[[], Awaitable[T]]) -> T:
        probe = self._enter()
        try:
            result = await call()
        except CounterStoreUnavailable:
            self._failed(probe)
            raise
        else:  # other exceptions (the store answered an error, the caller left) change nothing
            self._succeeded()
            return result
        finally:
            if probe:
                self._probing = False

    async def admit(self, request: AdmissionRequest, now: float) -> AdmissionResult:
        return await self._guard(lambda: self.store.admit(request, now))

    async def settle(self, settlement: Settlement, now: float) -> None:
        await self._guard(lambda: self.store.settle(settlement, now))

    async def budget_state(self, check: BudgetCheck, now: float) -> BudgetState:
        return await self._guard(lambda: self.store.budget_state(check, now))

    async def restore(self, seeds: Sequence[BudgetSeed], announce_at: float | None = None) -> int:
        return await self._guard(lambda: self.store.restore(seeds, announce_at))

    async def ping(self) -> bool:
        """Always asks the store (a health check must see it come back); never trips the breaker."""
        return await self.store.ping()

    async def close(self) -> None:
        await self.store.close()
