"""Latency histograms with fixed logarithmic bins: mergeable by adding counts, 1 % relative error.

Bin 0 holds latencies of at most 0.1 ms; bin i >= 1 holds (0.1 * G**(i-1), 0.1 * G**i] ms with
G = 1.01 / 0.99, so bin 781 ends past 10 min and the bins go on beyond it. A bin reports
2 * upper / (G + 1), within 1 % of every latency in it (within 0.05 ms for bin 0), so a
percentile read from a histogram is within that error of the nearest-rank percentile.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

RELATIVE_ERROR = 0.01
FLOOR_MS = 0.1
CEILING_MS = 1e12  # ~31 years: a larger (or infinite) latency counts in this one's bin
GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
LOG_GAMMA = math.log(GAMMA)

Histogram = dict[int, int]  # bin -> count


def bin_of(latency_ms: float) -> int:
    """The bin of one latency (ms); NaN and negatives fall in bin 0."""
    if not latency_ms > FLOOR_MS:
        return 0
    latency_ms = min(latency_ms, CEILING_MS)
    index = max(1, math.ceil(math.log(latency_ms / FLOOR_MS) / LOG_GAMMA))
    # log() may round across a bin edge: settle on the bin whose interval holds the value.
    while index > 1 and latency_ms <= FLOOR_MS * GAMMA ** (index - 1):
        index -= 1
    while latency_ms > FLOOR_MS * GAMMA**index:
        index += 1
    return index


def value_of(index: int) -> float:
    """The latency (ms) a bin reports."""
    if index <= 0:
        return FLOOR_MS / 2
    return 2 * FLOOR_MS * GAMMA**index / (GAMMA + 1)


def add(into: Histogram, other: Mapping[int, int]) -> Histogram:
    """Merge `other` into `into` (in place) and return it."""
    for index, count in other.items():
        into[index] = into.get(index, 0) + count
    return into


def of(latencies: Iterable[float]) -> Histogram:
    histogram: Histogram = {}
    for latency in latencies:
        index = bin_of(latency)
        histogram[index] = histogram.get(index, 0) + 1
    return histogram


def percentile(histogram: Mapping[int, int] | Mapping[str, int], fraction: float) -> float | None:
    """Nearest-rank percentile read from a histogram (None when it is empty); its bins may be
    numbers or their text (as JSON keeps them)."""
    return percentiles(histogram, (fraction,))[0]


def percentiles(
    histogram: Mapping[int, int] | Mapping[str, int], fractions: Sequence[float]
) -> tuple[float | None, ...]:
    """`percentile` at each of `fractions` (in any order), the bins sorted once for all."""
    n = sum(histogram.values())
    if n <= 0:
        return tuple(None for _ in fractions)
    ranks = [max(1, math.ceil(fraction * n)) for fraction in fractions]
    order = sorted(range(len(ranks)), key=ranks.__getitem__)
    found: list[float | None] = [None] * len(ranks)
    seen, done = 0, 0
    counts: Mapping[Any, int] = histogram
    for index in sorted(counts, key=int):
        seen += counts[index]
        while done < len(order) and seen >= ranks[order[done]]:
            found[order[done]] = value_of(int(index))
            done += 1
        if done == len(order):
            return tuple(found)
    raise AssertionError("unreachable: the ranks add up to n")


def encode(histogram: Mapping[int, int]) -> str:
    """JSON object text {"bin": count}, bins in order (stored in the rollup tables)."""
    return "{" + ",".join(f'"{k}":{histogram[k]}' for k in sorted(histogram) if histogram[k]) + "}"


def decode(text: str | bytes | None) -> Histogram:
    if not text:
        return {}
    return {int(k): int(v) for k, v in orjson.loads(text).items()}


def merge_text(a: str | bytes | None, b: str | bytes | None) -> str:
    """Merge two encoded histograms (SQLite's `cw_hist_merge`); bins keep their text keys, in
    any order (decode reads them back as numbers)."""
    into: dict[str, int] = orjson.loads(a) if a else {}
    for key, count in (orjson.loads(b) if b else {}).items():
        into[key] = into.get(key, 0) + count
    return orjson.dumps(into).decode()
