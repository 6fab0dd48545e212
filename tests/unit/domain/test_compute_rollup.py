"""The per-minute rollup of compute samples (pure): minutes folded one by one add up to the same
totals as the raw samples read over the whole window, whatever the sample times and gaps."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from costwarden.domain.compute_rollup import (
    Gaps,
    MinuteTotal,
    SeriesTotal,
    from_minutes,
    merge,
    minute_totals,
    window_totals,
)
from costwarden.domain.compute_sample import GpuProcess, GpuSample, ProcessSample

BASE = 28_333_333 * 60
GAPS = Gaps(process={"iris": 15.0}, nvml=3.0)
steps = st.lists(st.tuples(st.floats(0.2, 20.0), st.floats(0.0, 5.0), st.floats(0.0, 100.0)), min_size=2, max_size=80)


def series(points: list[tuple[float, float, float]]) -> list[ProcessSample | GpuSample]:
    out: list[ProcessSample | GpuSample] = []
    at, cpu = float(BASE), 0.0
    for step, used, util in points:
        at, cpu = at + step, cpu + used
        out.append(ProcessSample(at, "iris", 42, cpu, int(util) << 20, 4))
        out.append(GpuSample(at + 0.5, 0, util, 1 << 30, 1000, None, (GpuProcess(42, 1 << 30, util),)))
    return out


@settings(max_examples=60, deadline=None)
@given(steps)
def test_minutes_add_up_to_the_window(points: list[tuple[float, float, float]]) -> None:
    samples = series(points)
    end = BASE + 60 * (int(max(s.at for s in samples) - BASE) // 60 + 2)
    whole = {t.key: t for t in window_totals(samples, BASE, end, GAPS)}
    folded = {t.key: t for t in merge(from_minutes(minute_totals(samples, BASE, end, GAPS), BASE, end))}
    assert set(folded) == set(whole)
    for key, total in whole.items():
        assert folded[key].samples == total.samples
        assert folded[key].peak_bytes == total.peak_bytes
        assert abs(folded[key].busy_seconds - total.busy_seconds) <= 1e-9 * max(1.0, total.busy_seconds)
        assert abs(folded[key].covered_seconds - total.covered_seconds) <= 1e-9 * max(1.0, total.covered_seconds)


def test_a_window_that_cuts_a_minute_takes_its_share() -> None:
    row = MinuteTotal(BASE, SeriesTotal("process", "iris", 42, 12, 30.0, 60.0, 5, 60.0, 0))
    (cut,) = from_minutes([row], BASE + 45, BASE + 600)
    assert (cut.busy_seconds, cut.covered_seconds, cut.samples) == (7.5, 15.0, 12)
    assert from_minutes([row], BASE + 60, BASE + 600) == []
