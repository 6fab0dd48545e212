"""The sampler's clock guard: a wall clock that steps back (by more than slew and read skew allow)
holds a collector's samples until the wall clock is one gap limit past its last stored sample; a
clock that runs on, or steps forward, holds nothing."""

from __future__ import annotations

from costwarden.domain.sample_clock import ClockGuard, read_clock


def test_a_step_back_holds_until_the_gap_limit_is_passed() -> None:
    guard = ClockGuard()
    guard.stored("a", (100.0, 10.0))
    assert guard.hold("a", (104.98, 15.0), gap=15.0) is None  # 20 ms behind after 5 s: slew, not a step
    assert guard.hold("b", (0.0, 0.0), gap=15.0) is None  # another collector, nothing stored yet
    why = guard.hold("a", (104.7, 15.0), gap=15.0)  # 0.3 s behind: a step back
    assert why == (
        "the clock went back 0.300 s: no samples until it passes 115.000 (the stretch is a gap, not filled in)"
    )
    assert guard.hold("a", (114.9, 25.2), gap=15.0) == why
    assert not guard.released("a", why)
    assert guard.hold("a", (115.1, 25.4), gap=15.0) is None
    assert guard.released("a", why) and not guard.released("a", "OSError: gone")


def test_a_step_forward_holds_nothing() -> None:
    guard = ClockGuard()
    guard.stored("a", (100.0, 10.0))
    assert guard.hold("a", (3700.0, 11.0), gap=3.0) is None


def test_the_clocks_are_read_together() -> None:
    wall, mono = read_clock()
    again = read_clock()
    assert again[0] - wall >= -0.05 and again[1] >= mono
