"""When a store folds its pending rollup cells: after enough records or enough time, in the
background, `limit` cells per transaction until drained, and a failure leaves them for the next."""

from __future__ import annotations

import asyncio

from costwarden.storage.rollup_fold import FoldSchedule


class Folds:
    """A fold that takes `limit` cells at a time out of `pending` (a fake of the store's fold)."""

    def __init__(self, pending: int, fail: int = 0) -> None:
        self.pending, self.fail, self.calls = pending, fail, 0

    async def __call__(self, limit: int) -> int:
        self.calls += 1
        if self.fail:
            self.fail -= 1
            raise ConnectionError("the database is down")
        taken = min(limit, self.pending)
        self.pending -= taken
        return taken


async def test_a_fold_starts_after_enough_records_and_drains_in_chunks() -> None:
    folds, now = Folds(pending=25), [0.0]
    schedule = FoldSchedule(folds, rows=10, seconds=60.0, clock=lambda: now[0], limit=10)
    schedule.added(9)
    await asyncio.sleep(0)
    assert folds.calls == 0  # neither enough records nor enough time yet
    schedule.added(1)
    await schedule.close()
    assert (folds.calls, folds.pending) == (3, 0)  # 10, 10, then 5 < limit: drained


async def test_a_fold_starts_after_enough_time_and_never_without_records() -> None:
    folds, now = Folds(pending=3), [0.0]
    schedule = FoldSchedule(folds, rows=1000, seconds=5.0, clock=lambda: now[0], limit=10)
    now[0] = 6.0
    schedule.added(0)  # nothing stored: nothing to fold
    await schedule.close()
    assert folds.calls == 0
    schedule.added(1)
    await schedule.close()
    assert (folds.calls, folds.pending) == (1, 0)


async def test_a_failed_fold_is_retried_at_the_next_one_and_a_caller_may_fold_itself() -> None:
    folds, now = Folds(pending=4, fail=1), [0.0]
    schedule = FoldSchedule(folds, rows=1, clock=lambda: now[0], limit=10)
    schedule.added(1)
    await schedule.close()
    assert folds.pending == 4  # the failure was logged, the cells stay pending
    schedule.added(1)
    await schedule.close()
    assert folds.pending == 0
    manual = FoldSchedule(Folds(pending=7), rows=None)
    manual.added(10**9)  # rows=None: never in the background
    assert await manual.drain() == 7
