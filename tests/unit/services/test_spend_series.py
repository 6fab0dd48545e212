"""Spend series: aligned buckets, clipped at the window's end, settled buckets cached for a while."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from decimal import Decimal

import pytest

from costwarden.domain.record import UsageRecord
from costwarden.domain.report import QueryError, RecordCursor, SpendQuery, SpendReport, SpendRow, Within
from costwarden.services.recent_reports import RecentReports
from costwarden.services.spend_series import (
    MAX_BUCKETS,
    Bucket,
    SpendSeries,
    aligned,
    bucket_starts,
    cost_per_1m_tokens,
    merged,
)

HOUR = 3600


class CountingLedger:
    """A unit-test ledger: answers each query with its window's length as cost, and counts queries."""

    def __init__(self) -> None:
        self.queries: list[SpendQuery] = []

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def write(self, records: Sequence[UsageRecord]) -> int:
        return 0

    async def spend_encoded(self, query: SpendQuery, encode: Callable[[SpendReport], bytes]) -> bytes:
        return encode(await self.spend(query))

    async def spend(self, query: SpendQuery) -> SpendReport:
        self.queries.append(query)
        assert query.start is not None and query.end is not None
        row = SpendRow(group=("t",), requests=1, cost_usd=Decimal(int(query.end - query.start)))
        return SpendReport(query, (row,), row)

    async def top(self, query: SpendQuery, n: int) -> list[SpendRow]:
        return list((await self.spend(query)).rows[:n])

    async def spend_series(self, query: SpendQuery, step_s: int) -> dict[int, SpendReport] | None:
        return None  # no rollups here: bucket by bucket

    async def spend_spans(
        self, query: SpendQuery, spans: Sequence[tuple[float, float | None]], within: Within = ()
    ) -> list[SpendReport]:
        return [await self.spend(replace(query, start=start, end=end)) for start, end in spans]

    async def records(
        self, start: float | None, end: float | None, limit: int, before: RecordCursor | None = None
    ) -> list[UsageRecord]:
        return []

    async def ping(self) -> bool:
        return True


def test_buckets_are_aligned_and_bounded() -> None:
    assert aligned(10 * HOUR + 5, HOUR) == 10 * HOUR
    assert bucket_starts(10 * HOUR, 12 * HOUR + 1, HOUR) == [10 * HOUR, 11 * HOUR, 12 * HOUR]
    with pytest.raises(QueryError, match="at most"):
        bucket_starts(0, (MAX_BUCKETS + 1) * HOUR, HOUR)


async def test_settled_buckets_are_cached_the_current_one_never() -> None:
    ledger = CountingLedger()
    series = SpendSeries(ledger, settled_s=5, ttl_s=60)
    now = 13 * HOUR + 100
    first = await series.buckets(("team",), (), 10 * HOUR, now, HOUR, now)
    assert [b.report.total.cost_usd for b in first] == [HOUR, HOUR, HOUR, 100]  # the last bucket clipped to now
    assert len(ledger.queries) == 4
    again = await series.buckets(("team",), (), 10 * HOUR, now + 30, HOUR, now + 30)
    assert len(ledger.queries) == 5 and again[-1].report.total.cost_usd == 130  # only the current bucket
    await series.buckets(("team",), (("team", "a"),), 10 * HOUR, now + 30, HOUR, now + 30)
    assert len(ledger.queries) == 9  # other filters, other entries
    await series.buckets(("team",), (), 10 * HOUR, now + 61, HOUR, now + 61)
    assert len(ledger.queries) == 13  # past the ttl: read again


class RollupLedger(CountingLedger):
    """A ledger that reads whole buckets at once (as the stores do from their cells)."""

    def __init__(self) -> None:
        super().__init__()
        self.series: list[SpendQuery] = []

    async def spend_series(self, query: SpendQuery, step_s: int) -> dict[int, SpendReport] | None:
        self.series.append(query)
        assert query.start is not None and query.end is not None
        reports = {}
        for b in range(int(query.start), int(query.end), step_s):
            row = SpendRow(group=("t",), requests=1, cost_usd=Decimal(step_s))
            reports[b] = SpendReport(SpendQuery(query.group_by, b, b + step_s), (row,), row)
        return reports


async def test_whole_buckets_are_read_at_once_the_partial_one_alone() -> None:
    ledger = RollupLedger()
    series = SpendSeries(ledger, settled_s=5, ttl_s=60)
    now = 13 * HOUR + 100
    first = await series.buckets(("team",), (), 10 * HOUR, now, HOUR, now)
    assert [b.report.total.cost_usd for b in first] == [HOUR, HOUR, HOUR, 100]
    assert [(q.start, q.end) for q in ledger.series] == [(10 * HOUR, 13 * HOUR)]  # one read for three buckets
    assert [(q.start, q.end) for q in ledger.queries] == [(13 * HOUR, now)]  # and one for the partial bucket
    await series.buckets(("team",), (), 9 * HOUR, now + 30, HOUR, now + 30)
    assert len(ledger.series) == 1 and len(ledger.queries) == 3  # one uncached whole bucket: a report of its own


async def test_the_cache_is_bounded() -> None:
    ledger = CountingLedger()
    series = SpendSeries(ledger, settled_s=5, ttl_s=60, max_entries=2)
    now = 10 * HOUR
    await series.buckets(("team",), (), 0, now, HOUR, now)
    assert len(ledger.queries) == 10
    await series.buckets(("team",), (), 7 * HOUR, now, HOUR, now)
    assert len(ledger.queries) == 11  # 7-8 h and 8-9 h kept (the newest two), 9-10 h is not settled
    await series.buckets(("team",), (), 6 * HOUR, now, HOUR, now)
    assert len(ledger.queries) == 15  # 6-7 h was dropped; reading it again drops the others in turn


def test_cost_per_1m_tokens() -> None:
    assert cost_per_1m_tokens(SpendRow(group=(), input_tokens=3, output_tokens=1, cost_usd=Decimal("0.000002"))) == (
        Decimal("0.5")
    )
    assert cost_per_1m_tokens(SpendRow(group=(), cost_usd=Decimal(1))) == 0


def test_merged_rows_add_exactly_and_rank_by_cost() -> None:
    def report(*rows: SpendRow) -> SpendReport:
        cost = sum((r.cost_usd for r in rows), Decimal(0))
        total = SpendRow(group=(), requests=sum(r.requests for r in rows), cost_usd=cost)
        return SpendReport(SpendQuery(("team",)), rows, total)

    a1 = SpendRow(group=("a",), requests=1, input_tokens=5, cost_usd=Decimal("0.000000001"))
    b1 = SpendRow(group=("b",), requests=2, errors=1, cost_usd=Decimal("0.3"))
    a2 = SpendRow(group=("a",), requests=3, output_tokens=7, cost_usd=Decimal("0.4"))
    rows, total = merged([Bucket(0, 1, report(a1, b1)), Bucket(1, 2, report(a2))])
    assert rows == [
        SpendRow(group=("a",), requests=4, input_tokens=5, output_tokens=7, cost_usd=Decimal("0.400000001")),
        SpendRow(group=("b",), requests=2, errors=1, cost_usd=Decimal("0.3")),
    ]
    assert (total.requests, total.cost_usd) == (6, Decimal("0.700000001"))


async def test_recent_reports_are_reused_for_a_minute_then_read_again() -> None:
    ledger = CountingLedger()
    recent = RecentReports(ledger, ttl_s=60, max_entries=1)
    first = await recent.spend(SpendQuery(("team",), 0, 100), now=100)
    assert await recent.spend(SpendQuery(("team",), 0, 130), now=130) is first  # the end moved: same report
    assert len(ledger.queries) == 1
    await recent.spend(SpendQuery(("team",), 60, 130), now=130)  # another start: another entry (and evicts)
    await recent.spend(SpendQuery(("team",), 0, 140), now=140)
    await recent.spend(SpendQuery(("team",), 0, 205), now=205)  # expired
    assert len(ledger.queries) == 4


async def test_recent_top_groups_are_reused_with_when_they_were_read() -> None:
    ledger = CountingLedger()
    recent = RecentReports(ledger, ttl_s=60)
    rows, read_at = await recent.top(SpendQuery(("team",), 0, 100), 10, now=100)
    assert (rows, read_at) == ([SpendRow(group=("t",), requests=1, cost_usd=Decimal(100))], 100)
    assert await recent.top(SpendQuery(("team",), 0, 130), 10, now=130) == (rows, 100)  # reused: read at 100
    assert (await recent.top(SpendQuery(("team",), 0, 130), 3, now=130))[1] == 130  # another n: read again
    assert (await recent.top(SpendQuery(("team",), 0, 170), 10, now=170))[1] == 170  # expired
    assert len(ledger.queries) == 3


def test_merged_rows_add_the_modal_units() -> None:
    """Images, audio seconds, characters, documents and reasoning tokens add up across buckets, as
    the tokens do (the dashboard's per-window rows and total)."""
    one = SpendRow(group=("a",), requests=1, images=2, audio_ms=1500, characters=40, documents=3, reasoning_tokens=9)
    two = SpendRow(group=("a",), requests=1, images=1, audio_ms=500, characters=2, documents=1, reasoning_tokens=1)
    buckets = [Bucket(0, 1, SpendReport(SpendQuery(("team",)), (r,), replace(r, group=()))) for r in (one, two)]
    rows, total = merged(buckets)
    want = SpendRow(group=("a",), requests=2, images=3, audio_ms=2000, characters=42, documents=4, reasoning_tokens=10)
    assert rows == [want]
    assert total == replace(want, group=())
