"""A clock a unit test sets by hand: `clock.now = …`, read by calling it (the `clock=` of the code under test)."""

from __future__ import annotations


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
