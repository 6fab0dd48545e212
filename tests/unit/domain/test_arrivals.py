"""Open-loop arrivals: inside the run, ascending, at the rate asked."""

from __future__ import annotations

import itertools
import random

from hypothesis import given
from hypothesis import strategies as st

from costwarden.domain.arrivals import arrival_times


@given(st.floats(0.5, 500), st.floats(0.1, 20))
def test_uniform_arrivals_are_evenly_spaced_at_the_rate(rate: float, duration: float) -> None:
    times = list(arrival_times(rate, duration, "uniform", random.Random(0)))
    assert times[0] == 0.0 and all(t < duration for t in times)
    assert all(abs((b - a) - 1 / rate) < 1e-9 for a, b in itertools.pairwise(times))
    assert abs(len(times) - rate * duration) <= 1


@given(st.integers(0, 2**32))
def test_poisson_arrivals_average_the_rate(seed: int) -> None:
    times = list(arrival_times(200.0, 50.0, "poisson", random.Random(seed)))
    assert times == sorted(times) and times[-1] < 50.0
    assert 9000 <= len(times) <= 11000  # 10,000 expected; sd 100
