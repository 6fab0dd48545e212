"""Passive upstream health: ejection after consecutive failures, cool-down, half-open probe."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from costwarden.upstream.health import Transition, UpstreamPool


def test_round_robin_over_upstreams_in_service() -> None:
    pool = UpstreamPool(3, eject_after=2, cooldown_s=10)
    firsts = [pool.order(0.0)[0] for _ in range(6)]
    assert firsts == [0, 1, 2, 0, 1, 2]
    assert sorted(pool.order(0.0)) == [0, 1, 2]  # every upstream is a candidate for a retry


def test_ejected_after_consecutive_failures_only() -> None:
    pool = UpstreamPool(2, eject_after=3, cooldown_s=10)
    assert pool.failed(0, 0.0) is None
    assert pool.failed(0, 0.1) is None
    assert pool.succeeded(0, 0.2) is None  # a success resets the count
    assert pool.failed(0, 0.3) is None
    assert pool.failed(0, 0.4) is None
    assert pool.ejected() == []
    assert pool.failed(0, 0.5) is Transition.EJECTED
    assert pool.ejected() == [0]
    assert all(pool.order(1.0) == [1] for _ in range(4))


def test_half_open_probe_after_cooldown_readmits_on_success() -> None:
    pool = UpstreamPool(2, eject_after=1, cooldown_s=5)
    assert pool.failed(0, 100.0) is Transition.EJECTED
    assert pool.order(104.9) == [1]
    assert pool.order(105.0) == [0, 1]  # the probe goes first; the healthy one stays as the retry
    assert pool.order(105.1) == [1]  # one probe at a time
    assert pool.succeeded(0, 105.2) is Transition.READMITTED
    assert pool.ejected() == []
    assert sorted(pool.order(105.3)) == [0, 1]


def test_failed_probe_ejects_for_another_cooldown() -> None:
    pool = UpstreamPool(2, eject_after=1, cooldown_s=5)
    pool.failed(0, 0.0)
    assert pool.order(5.0)[0] == 0
    assert pool.failed(0, 5.1) is None  # still ejected: no new transition to report
    assert pool.order(10.0) == [1]
    assert pool.order(10.1) == [0, 1]


def test_a_probe_that_never_reports_is_forgotten_after_a_cooldown() -> None:
    pool = UpstreamPool(1, eject_after=1, cooldown_s=5)
    pool.failed(0, 0.0)
    assert pool.order(5.0) == [0]
    assert pool.order(9.9) == []  # the probe is still in flight
    assert pool.order(10.0) == [0]  # it never came back (its client went away): probe again


def test_released_probe_frees_the_slot_at_once() -> None:
    pool = UpstreamPool(1, eject_after=1, cooldown_s=5)
    pool.failed(0, 0.0)
    assert pool.order(5.0) == [0]
    pool.released(0)
    assert pool.order(5.1) == [0]


def test_all_ejected_gives_an_empty_order() -> None:
    pool = UpstreamPool(2, eject_after=1, cooldown_s=5)
    pool.failed(0, 0.0)
    pool.failed(1, 0.0)
    assert pool.order(1.0) == []
    assert pool.ejected() == [0, 1]


@pytest.mark.parametrize(("size", "eject_after", "cooldown"), [(0, 1, 1.0), (1, 0, 1.0), (1, 1, 0.0)])
def test_invalid_pool_is_refused(size: int, eject_after: int, cooldown: float) -> None:
    with pytest.raises(ValueError):
        UpstreamPool(size, eject_after, cooldown)


@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from(["ok", "fail", "order", "release"]), st.floats(0, 3)),
        max_size=60,
    )
)
def test_an_upstream_is_never_lost_for_good(steps: list[tuple[int, str, float]]) -> None:
    """Whatever happens, once traffic stops failing every upstream is tried again within a cool-down."""
    pool = UpstreamPool(3, eject_after=2, cooldown_s=5)
    now = 0.0
    for index, action, dt in steps:
        now += dt
        if action == "ok":
            pool.succeeded(index, now)
        elif action == "fail":
            pool.failed(index, now)
        elif action == "order":
            order = pool.order(now)
            assert len(order) == len(set(order))  # no upstream twice in one request's plan
            assert set(order) <= {0, 1, 2}
        else:
            pool.released(index)
    seen: set[int] = set()
    for step in range(40):
        seen.update(pool.order(now + 5.0 + step * 5.0))
    assert seen == {0, 1, 2}
