"""Which folded hours a record reached after their fold (a spool replayed after an outage, a late
batch), found without reading the ledger: each fold keeps, per deployment and hour, the number of
records the rollups counted for it (they count every stored record, in the transaction that stores
it, and are never pruned); an hour whose count has changed since is refolded.

The check compares whole weeks first (the sum of their hours' counts against the rollups' week
cell), then the days of the weeks that differ or are not wholly folded, then those days' hours: a
round reads a few rows per week, day and hour that could differ, not the month's records.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any

from costwarden.domain.busy_fold import HOUR

DAY, WEEK = 86400, 7 * 86400  # rollup grains (weeks start on Thursdays, as the epoch: bucket % WEEK == 0)
Query = tuple[str, tuple[Any, ...]]  # SQL with $1, $2 ... placeholders and its arguments
Check = Generator[Query, list[Any], dict[str, list[int]]]


def _marks(mark: str, first: int, count: int) -> str:
    return ", ".join(mark.format(first + i) for i in range(count))


def _floor(column: str, grain: int) -> str:
    return column if grain == HOUR and column == "hour" else f"({column} - (({column} % {grain}) + {grain}) % {grain})"


def counts_sql(mark: str, deployments: int, grain: int) -> str:
    """(deployment, bucket, records) per bucket of `grain` in [$1, $2) for deployments $3...: the
    rollup cells of that grain plus the pending cells not folded into them yet, in one statement (one
    snapshot: a rollup fold moves cells in one transaction)."""
    deps = _marks(mark, 3, deployments)
    lo, hi = mark.format(1), mark.format(2)
    return (
        "SELECT deployment, b, SUM(n) FROM ("
        f"SELECT deployment, bucket AS b, requests AS n FROM rollup WHERE grain = {grain} "
        f"AND bucket >= {lo} AND bucket < {hi} AND deployment IN ({deps}) "
        f"UNION ALL SELECT deployment, {_floor('bucket', grain)} AS b, requests AS n FROM rollup_delta "
        f"WHERE cube = 0 AND bucket >= {lo} AND bucket < {hi} AND deployment IN ({deps})"
        ") AS cells GROUP BY deployment, b"
    )


def _marks_sql(deployments: int, grain: int) -> str:
    """(deployment, bucket, hours folded, their counts) per bucket of `grain` in [$1, $2)."""
    b = _floor("hour", grain)
    return (
        f"SELECT deployment, {b} AS b, COUNT(*), SUM(records) FROM compute_busy_hours WHERE hour >= $1 "
        f"AND hour < $2 AND horizon_s = $3 AND deployment IN ({_marks('${}', 4, deployments)}) GROUP BY deployment, {b}"
    )


def counted(rows: Sequence[Sequence[Any]]) -> dict[tuple[str, int], int]:
    return {(str(d), int(b)): int(n) for d, b, n in rows}


def _runs(buckets: set[int], grain: int) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for b in sorted(buckets):
        if runs and runs[-1][1] == b:
            runs[-1] = (runs[-1][0], b + grain)
        else:
            runs.append((b, b + grain))
    return runs


def check(deployments: Sequence[str], horizon_s: float) -> Check:
    """Yields the queries to run and receives their rows; returns deployment -> stale hours."""
    n = len(deployments)
    span = yield (
        f"SELECT MIN(hour), MAX(hour) FROM compute_busy_hours WHERE horizon_s = $1 "
        f"AND deployment IN ({_marks('${}', 2, n)})",
        (horizon_s, *deployments),
    )
    if not span or span[0][0] is None:
        return {}
    lo, hi = int(span[0][0]), int(span[0][1]) + HOUR
    start = lo - lo % WEEK
    todo = {(d, b) for d in deployments for b in range(start, hi, WEEK)}
    stale: dict[str, list[int]] = {}
    for grain, finer in ((WEEK, DAY), (DAY, HOUR), (HOUR, 0)):
        folded: dict[tuple[str, int], tuple[int, int]] = {}
        counts: dict[tuple[str, int], int] = {}
        for a, b in _runs({b for _, b in todo}, grain):
            rows = yield (_marks_sql(n, grain), (a, b, horizon_s, *deployments))
            folded.update({(str(d), int(x)): (int(k), int(s)) for d, x, k, s in rows})
            counts.update(counted((yield (counts_sql("${}", n, grain), (a, b, *deployments)))))
        finer_todo: set[tuple[str, int]] = set()
        for d, b in sorted(todo):
            hours, records = folded.get((d, b), (0, 0))
            whole = hours == grain // HOUR
            if whole and records == counts.get((d, b), 0):
                continue  # every hour folded, and no record reached them since
            if finer:
                finer_todo.update((d, x) for x in range(b, b + grain, finer) if x + finer > lo and x < hi)
            elif whole:
                stale.setdefault(d, []).append(b)
        todo = finer_todo
    return stale


def run_sync(
    fetch: Callable[[str, tuple[Any, ...]], list[Any]], deployments: Sequence[str], horizon_s: float
) -> dict[str, list[int]]:
    steps = check(deployments, horizon_s)
    try:
        query = next(steps)
        while True:
            query = steps.send(fetch(*query))
    except StopIteration as done:
        return dict(done.value)


async def run_async(
    fetch: Callable[[str, tuple[Any, ...]], Awaitable[list[Any]]], deployments: Sequence[str], horizon_s: float
) -> dict[str, list[int]]:
    steps = check(deployments, horizon_s)
    try:
        query = next(steps)
        while True:
            query = steps.send(await fetch(*query))
    except StopIteration as done:
        return dict(done.value)


def refold_ranges(stale: dict[str, list[int]], horizon_s: float) -> list[tuple[int, int]]:
    """The hours to refold, merged: a record started in hour h counts up to `horizon_s` after its
    start, so the hours from h to the one holding h + 1 h + horizon."""
    reach = -(-(HOUR + int(-(-horizon_s // 1))) // HOUR) * HOUR
    spans = sorted((h, h + reach) for hours in stale.values() for h in hours)
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged
