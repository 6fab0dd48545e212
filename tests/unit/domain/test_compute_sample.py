"""Busy time measured from samples: pro rata at the window's edges; a restart, a clock that jumps
back or a long gap is skipped and counted, never filled in."""

from __future__ import annotations

import pytest

from costwarden.domain.compute_sample import GpuSample, ProcessSample, cpu_busy, gpu_busy


def _p(at: float, cpu: float, pid: int = 7) -> ProcessSample:
    return ProcessSample(at, "iris", pid, cpu, 1 << 20, 4)


def test_cpu_seconds_pro_rata_and_gaps() -> None:
    samples = [_p(0, 0.0), _p(10, 5.0), _p(20, 6.0), _p(15, 9.0), _p(100, 50.0)]  # 15 < 20: time went back
    measured = cpu_busy(samples, 5.0, 200.0, max_gap=30.0)
    # [0,10] counts half (5 of its 10 s in the window): 2.5; sorted, (10,5)->(15,9): 4; (15,9)->(20,6): the
    # counter went down (skipped); (20,6)->(100,50): 80 s > max_gap (skipped).
    assert measured.busy_seconds == pytest.approx(2.5 + 4.0)
    assert measured.covered_seconds == pytest.approx(5 + 5)
    assert measured.gaps == 2


def test_two_pids_add_up_and_a_restart_is_a_gap() -> None:
    samples = [_p(0, 1.0, 1), _p(1, 1.5, 1), _p(0, 3.0, 2), _p(1, 3.25, 2), _p(2, 0.1, 2)]
    measured = cpu_busy(samples, 0, 10, max_gap=5)
    assert measured.busy_seconds == pytest.approx(0.75) and measured.gaps == 1


def test_gpu_utilisation_integral() -> None:
    samples = [GpuSample(t, 0, u, 0, 0, None) for t, u in ((0, 0), (1, 50), (2, 100), (10, 100), (11, 20))]
    measured = gpu_busy(samples, 0.5, 11, max_gap=2)
    assert measured.busy_seconds == pytest.approx(0.5 * 0.5 + 1.0 + 0.2)  # (2,10] is a gap
    assert measured.gaps == 1 and measured.covered_seconds == pytest.approx(2.5)
