"""The compute sampler's clock: samples are stamped with the wall clock (to line up with the ledger's
request times), and a wall clock can step back (NTP, a VM restored, a hand-set date). A sample
stamped before the ones already stored would interleave with them once sorted by time and pair with
samples taken at another moment, making up busy time. `ClockGuard` notices a step back by comparing
the wall clock's progress with the monotonic clock's since a collector's last stored sample, and
holds that collector's samples until the wall clock is more than one gap limit past its last stored
sample: the stretch is then a gap (never paired, never filled in), and the status says why."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

Reading = tuple[float, float]  # (wall clock, monotonic clock), seconds, read together
SLACK = 0.05  # seconds of disagreement always allowed (the two reads are not one instant)
DRIFT = 0.001  # and per second elapsed (NTP slews a clock by at most 500 ppm)


def read_clock() -> Reading:
    """The wall and monotonic clocks read back to back (the tighter of three tries)."""
    best: tuple[float, float, float] | None = None
    for _ in range(3):
        before = time.monotonic()
        wall = time.time()
        width = time.monotonic() - before
        if best is None or width < best[2]:
            best = (wall, before + width / 2, width)
        if width < 0.001:
            break
    assert best is not None
    return best[0], best[1]


@dataclass(slots=True)
class ClockGuard:
    """Per collector: the readings of its last stored sample, and when sampling may resume."""

    _last: dict[object, Reading] = field(default_factory=dict)
    _resume: dict[object, tuple[float, str]] = field(default_factory=dict)

    def hold(self, collector: object, now: Reading, gap: float) -> str | None:
        """None when a sample taken at `now` may be stored; else why not (for the collector's status).
        `gap` is the collector's gap limit: a pair of samples further apart is never counted."""
        wall, mono = now
        held = self._resume.get(collector)
        if held is not None:
            if wall > held[0]:
                del self._resume[collector]
                return None
            return held[1]
        last = self._last.get(collector)
        if last is None:
            return None
        elapsed = mono - last[1]
        back = elapsed - (wall - last[0])
        if back <= SLACK + DRIFT * max(elapsed, 0.0):
            return None
        until = last[0] + gap
        why = (
            f"the clock went back {back:.3f} s: no samples until it passes {until:.3f} "
            f"(the stretch is a gap, not filled in)"
        )
        self._resume[collector] = (until, why)
        return why

    def stored(self, collector: object, now: Reading) -> None:
        """A sample taken at `now` was stored."""
        self._last[collector] = now

    def released(self, collector: object, why: str | None) -> bool:
        """Whether `why` (a status text) is a hold this guard has since released."""
        return why is not None and why.startswith("the clock went back") and collector not in self._resume
