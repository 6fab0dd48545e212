"""Rollups: ledger totals per minute, hour and UTC day and per value of every report dimension.

A rollup cell is keyed by (grain, bucket start, dimension values) and holds exact sums and a
latency histogram; cells merge by addition, so a batch of new records becomes a set of deltas.
`plan` splits a report window into whole days, hours and minutes read from rollups and the
partial minutes at its edges read from raw records. Pure: times in, values out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from costwarden.domain import latency_histogram
from costwarden.domain.report import GROUP_DIMENSIONS

MINUTE, HOUR, DAY = 60, 3600, 86400
GRAINS: tuple[int, ...] = (MINUTE, HOUR, DAY)
DIMENSIONS: tuple[str, ...] = GROUP_DIMENSIONS

# What a fact carries, in order: the column names the SQL adapters select to feed `cells`.
FACT_COLUMNS: tuple[str, ...] = (
    "started_at",
    *DIMENSIONS,
    "latency_ms",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "items",
)
Fact = tuple[object, ...]  # FACT_COLUMNS values, then the cost in integer nano-dollars
_OUTCOME = 1 + DIMENSIONS.index("outcome")
_N_DIMS = len(DIMENSIONS)


def bucket_start(at: float, grain: int) -> int:
    """The start (Unix seconds) of the bucket of `grain` seconds holding `at`, exactly."""
    start = math.floor(at / grain) * grain
    if start > at:  # the division rounded up across a bucket edge
        start -= grain
    elif start + grain <= at:
        start += grain
    return int(start)


@dataclass(slots=True)
class Cell:
    """Sums over the records of one (grain, bucket, dimensions); cost in nano-dollars."""

    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    items: int = 0
    cost_nanos: int = 0
    latency: latency_histogram.Histogram = field(default_factory=dict)


CellKey = tuple[int, int, tuple[str | None, ...]]  # grain, bucket start, dimension values


def cells(facts: Iterable[Fact]) -> dict[CellKey, Cell]:
    """The rollup deltas of newly stored records, one cell per grain and bucket they fall in."""
    out: dict[CellKey, Cell] = {}
    for fact in facts:
        started_at = float(fact[0])  # type: ignore[arg-type]
        dims = tuple(None if v is None else str(v) for v in fact[1 : 1 + _N_DIMS])
        latency, inp, outp, cached, items, cost = fact[1 + _N_DIMS :]
        index = latency_histogram.bin_of(float(latency))  # type: ignore[arg-type]
        error = 0 if fact[_OUTCOME] == "served" else 1
        for grain in GRAINS:
            key = (grain, bucket_start(started_at, grain), dims)
            cell = out.get(key)
            if cell is None:
                cell = out[key] = Cell()
            cell.requests += 1
            cell.errors += error
            cell.input_tokens += int(inp)  # type: ignore[call-overload]
            cell.output_tokens += int(outp)  # type: ignore[call-overload]
            cell.cached_tokens += int(cached)  # type: ignore[call-overload]
            cell.items += int(items)  # type: ignore[call-overload]
            cell.cost_nanos += int(cost)  # type: ignore[call-overload]
            cell.latency[index] = cell.latency.get(index, 0) + 1
    return out


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


def plan(start: float | None, end: float | None) -> Plan:
    """Split [start, end) into whole UTC days, hours and minutes, and raw partial minutes."""
    raw: list[tuple[float | None, float | None]] = []
    rolled: list[tuple[int, int | None, int | None]] = []
    _split(start, end, 0, raw, rolled)
    return Plan(tuple(raw), tuple(rolled))


def _split(
    lo: float | None,
    hi: float | None,
    level: int,
    raw: list[tuple[float | None, float | None]],
    rolled: list[tuple[int, int | None, int | None]],
) -> None:
    """Cover [lo, hi) (aligned to the grain below `level`): whole buckets of GRAINS[level] go one
    level up, the edges to the grain below (raw records below minutes)."""

    def below(a: float | None, b: float | None) -> None:
        if level == 0:
            raw.append((None if a is None else float(a), None if b is None else float(b)))
        else:
            rolled.append((GRAINS[level - 1], _int(a), _int(b)))

    grain = GRAINS[level]
    up, down = _up(lo, grain), _down(hi, grain)
    if not _before(up, down):
        below(lo, hi)
        return
    if lo is not None and lo != up:
        below(lo, up)
    if level + 1 < len(GRAINS):
        _split(up, down, level + 1, raw, rolled)
    else:
        rolled.append((grain, up, down))
    if hi is not None and down != hi:
        below(down, hi)


def _int(at: float | None) -> int | None:
    return None if at is None else int(at)
