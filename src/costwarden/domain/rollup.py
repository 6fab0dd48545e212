"""Rollups: ledger totals per minute, hour or UTC day and per value of the report dimensions.

Two base cubes: `rollup` holds every dimension but the key (minutes, hours, 6 hours, days, weeks);
`rollup_key` adds the key, at UTC days only (keys are many, so finer key cells would hold about one record each).
Three narrow cubes are derived from them (migration 0020) for the reads that name few dimensions (the
dashboard's panels, budget rebuilds): per team, project, environment and outcome (the outcome since
0022: a team budget's rebuild groups by it); per deployment and outcome; per key (its team too) with
week cells. A derived cube has no pending cells of its own: it reads its source cube's and a
fold adds them into it as well. A report reads the narrowest cube holding its dimensions.
`plan` splits a report window into whole buckets read from a cube and the partial buckets at its
edges read from raw records. Pure: times in, values out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from operator import add, attrgetter, itemgetter

from costwarden.domain.record import NOT_ERRORS, Outcome, UsageRecord
from costwarden.domain.report import GROUP_DIMENSIONS, SpendQuery
from costwarden.domain.usage import UNIT_FIELDS

MINUTE, HOUR, DAY, WEEK = 60, 3600, 86400, 7 * 86400  # weeks start on Thursdays (the Unix epoch's)
QUARTER_DAY = 6 * HOUR  # 00:00, 06:00, 12:00, 18:00 UTC (migration 0023): a window's edges read at most 5 hours each


@dataclass(frozen=True, slots=True)
class Cube:
    """A rollup table: its dimension columns and its grains (seconds, finest first)."""

    table: str
    dimensions: tuple[str, ...]
    grains: tuple[int, ...]
    source: int | None = None  # a derived cube: the index in CUBES of the cube whose pending cells it reads
    latency: bool = True  # whether its cells hold latency histograms (without: reports with no percentiles only)

    @property
    def pending(self) -> int:
        """The index in CUBES of the cube whose pending cells (rollup_delta.cube) hold this one's."""
        return CUBES.index(self) if self.source is None else self.source


ORG = Cube("rollup", tuple(d for d in GROUP_DIMENSIONS if d != "key_id"), (MINUTE, HOUR, QUARTER_DAY, DAY, WEEK))
KEYS = Cube("rollup_key", GROUP_DIMENSIONS, (DAY,))
# The derived cubes start at hours (a report's partial hours at its edges are read raw) and only the
# deployment cube keeps histograms (the latency panel): each grain and histogram costs the fold.
TEAMS = Cube("rollup_team", ("team", "project", "environment", "outcome"), (HOUR, DAY, WEEK), source=0, latency=False)
DEPLOYMENTS = Cube("rollup_deployment", ("deployment", "outcome"), (HOUR, DAY, WEEK), source=0)
KEY_TOTALS = Cube("rollup_key_total", ("team", "key_id"), (DAY, WEEK), source=1, latency=False)
BASE_CUBES: tuple[Cube, ...] = (ORG, KEYS)  # the cubes a write makes pending cells for (their index: rollup_delta.cube)
CUBES: tuple[Cube, ...] = (*BASE_CUBES, TEAMS, DEPLOYMENTS, KEY_TOTALS)
DERIVED: tuple[Cube, ...] = CUBES[len(BASE_CUBES) :]
_NARROWEST = (DEPLOYMENTS, TEAMS, KEY_TOTALS, ORG, KEYS)  # fewest cells first


def cube_for(query: SpendQuery) -> Cube:
    """The narrowest cube (fewest cells) holding every dimension the query groups or filters by, and
    latency histograms if it asks for percentiles."""
    named = {*query.group_by, *(name for name, _ in query.where)}
    return next(c for c in _NARROWEST if named <= set(c.dimensions) and (c.latency or not query.percentiles))


def bucket_start(at: float, grain: int) -> int:
    """The start (Unix seconds) of the bucket of `grain` seconds holding `at`, exactly."""
    start = math.floor(at / grain) * grain
    if start > at:  # the division rounded up across a bucket edge
        start -= grain
    elif start + grain <= at:
        start += grain
    return int(start)


@dataclass(frozen=True, slots=True)
class Plan:
    """Where a window's records are read: raw [start, end) spans and (grain, first, end) bucket ranges.

    A bound of None is open. Bucket ranges hold bucket starts in [first, end).
    """

    raw: tuple[tuple[float | None, float | None], ...]
    rolled: tuple[tuple[int, int | None, int | None], ...]


def _up(at: float | None, grain: int) -> int | None:
    if at is None:
        return None
    start = bucket_start(at, grain)
    return start if start == at else start + grain


def _down(at: float | None, grain: int) -> int | None:
    return None if at is None else bucket_start(at, grain)


def _before(a: float | None, b: float | None) -> bool:
    """a < b, where a None `a` is minus infinity and a None `b` plus infinity."""
    return a is None or b is None or a < b


def plan(start: float | None, end: float | None, grains: tuple[int, ...] = ORG.grains) -> Plan:
    """Split [start, end) into whole buckets of `grains` (finest first) and raw partial buckets
    of the finest grain."""
    raw: list[tuple[float | None, float | None]] = []
    rolled: list[tuple[int, int | None, int | None]] = []
    _split(start, end, grains, 0, raw, rolled)
    return Plan(tuple(raw), tuple(rolled))


def _split(
    lo: float | None,
    hi: float | None,
    grains: tuple[int, ...],
    level: int,
    raw: list[tuple[float | None, float | None]],
    rolled: list[tuple[int, int | None, int | None]],
) -> None:
    """Cover [lo, hi) (aligned to the grain below `level`): whole buckets of grains[level] go one
    level up, the edges to the grain below (raw records below the finest)."""

    def below(a: float | None, b: float | None) -> None:
        if level == 0:
            raw.append((None if a is None else float(a), None if b is None else float(b)))
        else:
            rolled.append((grains[level - 1], _int(a), _int(b)))

    grain = grains[level]
    up, down = _up(lo, grain), _down(hi, grain)
    if not _before(up, down):
        below(lo, hi)
        return
    if lo is not None and lo != up:
        below(lo, up)
    if level + 1 < len(grains):
        _split(up, down, grains, level + 1, raw, rolled)
    else:
        rolled.append((grain, up, down))
    if hi is not None and down != hi:
        below(down, hi)


def _int(at: float | None) -> int | None:
    return None if at is None else int(at)


# Pending cells: a write collects the records it stored into each cube's finest cells, one per
# latency bin, with the exact sums of those records; a fold adds them into every grain (in SQL).

BASE_SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cached_tokens", "items", "cost_nanos")
"""The sums of the rollups before the modal units (migration 0017): what its backfills fill."""
UNIT_SUMS = UNIT_FIELDS
SUMS = (*BASE_SUMS[:-1], *UNIT_SUMS, "cost_nanos")  # the cost is always last
Dims = tuple[str | None, ...]
PendingKey = tuple[int, int, Dims, int]  # (base cube index in CUBES, bucket at its finest grain, dimensions, bin)
_KEY_DIMS = GROUP_DIMENSIONS[:-1]  # the outcome (last) is an enum: its value is the dimension
_PICK = tuple(tuple(GROUP_DIMENSIONS.index(d) for d in cube.dimensions) for cube in BASE_CUBES)
_DIMS = attrgetter(*_KEY_DIMS)
_NUMBERS = attrgetter(*BASE_SUMS[2:-1], *UNIT_SUMS)  # the summed counts, SUMS less requests, errors and cost
_FINE = math.gcd(*(cube.grains[0] for cube in BASE_CUBES))
_CUBE_CELLS = tuple((c, cube.grains[0], itemgetter(*_PICK[c])) for c, cube in enumerate(BASE_CUBES))


def collect(stored: Iterable[tuple[UsageRecord, int, int]]) -> dict[PendingKey, list[int]]:
    """The pending cells of stored records, given as (record, latency bin, cost in nano-dollars):
    the sums (in SUMS order, cost in integer nano-dollars) of the records of each base cube's finest
    bucket, dimension values and latency bin (derived cubes read their source's).

    Each record is looked at once: grouped by its bucket at `_FINE` (which nests in every base cube's
    finest grain), all its dimensions and its bin; each group's columns are summed at once and the
    group added into one cell of each base cube."""
    groups: dict[tuple[int, tuple[str | None, ...], Outcome, int], list[tuple[int, ...]]] = {}
    dims, numbers = _DIMS, _NUMBERS
    for record, index, cost in stored:
        key = (bucket_start(record.started_at, _FINE), dims(record), record.outcome, index)
        values = (*numbers(record), cost)
        group = groups.get(key)
        if group is None:
            groups[key] = [values]
        else:
            group.append(values)
    cells: dict[PendingKey, list[int]] = {}
    for (fine, names, outcome, index), rows in groups.items():
        n = len(rows)
        sums = [n, 0 if outcome.value in NOT_ERRORS else n, *(rows[0] if n == 1 else map(sum, zip(*rows, strict=True)))]
        full = (*names, outcome.value)
        for c, grain, pick in _CUBE_CELLS:
            at: PendingKey = (c, bucket_start(fine, grain), pick(full), index)
            cell = cells.get(at)
            if cell is None:
                cells[at] = sums.copy()
            else:
                cell[:] = map(add, cell, sums)
    return cells
