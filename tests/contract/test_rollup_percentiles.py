"""A rolled-up report's percentiles are exactly those of the histogram of its window's latencies:
every folded and pending cell's bins counted once (issue 14: a group's cells come back joined in
one row and merged with a C-level loop). Compared exactly, not within the 1 % bound: a cell's bin
dropped or counted twice changes some group's p50 or p95 here."""

from __future__ import annotations

import gc
import random
from collections.abc import Sequence

import pytest

from costwarden.domain import latency_histogram
from costwarden.domain.record import Outcome
from costwarden.domain.report import SpendQuery
from costwarden.ports import Store
from tests.contract.test_rollups import BASE, clear, fold, usage

TEAMS = [f"t{i}" for i in range(12)]


def expected(latencies: list[float]) -> tuple[float | None, float | None]:
    hist = latency_histogram.of(latencies)
    return latency_histogram.percentile(hist, 0.5), latency_histogram.percentile(hist, 0.95)


async def test_rolled_percentiles_equal_the_window_histograms(store: Store) -> None:
    await clear(store)
    rng = random.Random(14)
    span = 9 * 86_400  # a whole week, days, hours and minutes at both edges
    records = [
        usage(
            i,
            BASE + rng.uniform(0, span),
            rng.choice(TEAMS),
            rng.choice(["chat", "iris"]),
            rng.choice([Outcome.SERVED, Outcome.SERVED, Outcome.REJECTED]),
            rng.choice([rng.uniform(0.0, 5_000.0), rng.lognormvariate(4, 2)]),
            i,
        )
        for i in range(1_500)
    ]
    await store.write(records[:1_000])
    await fold(store, 10_000)
    await store.write(records[1_000:])  # pending cells too
    for start, end in ((BASE + 1_234.5, BASE + span - 4_321.25), (BASE + 90_061.0, BASE + 6 * 86_400 + 7.0)):
        report = await store.spend(SpendQuery(group_by=("team", "deployment"), start=start, end=end))
        window = [r for r in records if start <= r.started_at < end]
        groups: dict[tuple[str | None, ...], list[float]] = {}
        for r in window:
            groups.setdefault((r.team, r.deployment), []).append(r.latency_ms)
        assert report.percentile_error == latency_histogram.RELATIVE_ERROR  # read from rollups
        assert {row.group: (row.p50_ms, row.p95_ms) for row in report.rows} == {
            g: expected(v) for g, v in groups.items()
        }
        assert (report.total.p50_ms, report.total.p95_ms) == expected([r.latency_ms for r in window])
        total = await store.spend(SpendQuery(group_by=(), start=start, end=end))
        assert (total.total.p50_ms, total.total.p95_ms) == expected([r.latency_ms for r in window])


async def test_a_report_keeps_its_histograms_out_of_the_collectors_walk(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a report runs, each group's counts by bin are alive (a month by team,deployment: 1,500
    groups of ~560 bins). As lists, every young collection meanwhile visited each count (gen1 pauses
    of 8-50 ms during the probes of issue 14); as arrays the collector sees one object each."""
    await clear(store)
    rng = random.Random(15)
    records = [
        usage(i, BASE + rng.uniform(0, 2 * 86_400), rng.choice(TEAMS), "chat", Outcome.SERVED,
              rng.lognormvariate(4, 2), i)
        for i in range(300)
    ]  # fmt: skip
    await store.write(records)
    await fold(store, 10_000)
    seen: list[tuple[int, int]] = []  # (bins, references the collector follows from them)
    read = latency_histogram.count_percentiles

    def watched(counts: Sequence[int], fractions: Sequence[float]) -> tuple[float | None, ...]:
        seen.append((len(counts), len(gc.get_referents(counts))))
        return read(counts, fractions)

    monkeypatch.setattr(latency_histogram, "count_percentiles", watched)
    report = await store.spend(SpendQuery(group_by=("team",), start=BASE, end=BASE + 2 * 86_400))
    assert report.percentile_error == latency_histogram.RELATIVE_ERROR  # read from rollups
    assert len(seen) == len(report.rows) + 1 and max(bins for bins, _ in seen) > 500
    assert max(references for _, references in seen) <= 1  # the array's type, not one per bin
