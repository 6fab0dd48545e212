"""Passive health of one deployment's upstreams: eject after consecutive failures, probe to re-admit.

A pure state machine (the clock is passed in). An upstream is ejected after `eject_after`
consecutive failures (a connect failure, a timeout, a 5xx); once `cooldown_s` has passed, one
request is let through as a half-open probe: its success re-admits the upstream, its failure
ejects it for another cool-down. A probe that never reports (its client went away) is forgotten
after a cool-down, so an upstream can never stay stuck half-open.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Transition(StrEnum):
    """A change of an upstream's state worth telling an operator about (rare, never per request)."""

    EJECTED = "ejected"
    READMITTED = "readmitted"


@dataclass(slots=True)
class _State:
    failures: int = 0
    ejected_until: float | None = None  # None while the upstream is in service
    probe_since: float | None = None  # when the half-open probe in flight was sent


class UpstreamPool:
    """The upstreams of one deployment, by index, taken round-robin among those in service."""

    def __init__(self, size: int, eject_after: int, cooldown_s: float) -> None:
        if size < 1 or eject_after < 1 or cooldown_s <= 0:
            raise ValueError("a pool needs at least one upstream, eject_after >= 1 and cooldown_s > 0")
        self._states = [_State() for _ in range(size)]
        self._eject_after = eject_after
        self._cooldown = cooldown_s
        self._next = 0

    def order(self, now: float) -> list[int]:
        """The upstreams to try for one request, in order; empty when every one is ejected.

        A half-open probe goes first (so it carries real traffic, and a probe that cannot connect
        is retried on an upstream in service); then the ones in service, round-robin.
        """
        size = len(self._states)
        start = self._next
        self._next = (start + 1) % size
        probes: list[int] = []
        healthy: list[int] = []
        for offset in range(size):
            index = (start + offset) % size
            state = self._states[index]
            if state.ejected_until is None:
                healthy.append(index)
            elif now >= state.ejected_until and (
                state.probe_since is None or now - state.probe_since >= self._cooldown
            ):
                state.probe_since = now
                probes.append(index)
        return probes + healthy

    def in_service(self, index: int) -> bool:
        """Whether the upstream at `index` is in service (not ejected, nor waiting for its probe)."""
        return self._states[index].ejected_until is None

    def ejected(self) -> list[int]:
        """The upstreams out of service now (in cool-down or waiting for their probe)."""
        return [i for i, s in enumerate(self._states) if s.ejected_until is not None]

    def succeeded(self, index: int, now: float) -> Transition | None:
        state = self._states[index]
        state.failures = 0
        state.probe_since = None
        if state.ejected_until is not None:
            state.ejected_until = None
            return Transition.READMITTED
        return None

    def failed(self, index: int, now: float) -> Transition | None:
        state = self._states[index]
        state.failures += 1
        state.probe_since = None
        if state.ejected_until is not None:  # a probe (or a last-resort request) failed: stay out
            state.ejected_until = now + self._cooldown
            return None
        if state.failures >= self._eject_after:
            state.ejected_until = now + self._cooldown
            return Transition.EJECTED
        return None

    def released(self, index: int) -> None:
        """The request sent to `index` ended without a verdict (its client went away)."""
        self._states[index].probe_since = None
