"""Latency histograms with fixed logarithmic bins: mergeable by adding counts, 1 % relative error.

Bin 0 holds latencies of at most 0.1 ms; bin i >= 1 holds (0.1 * G**(i-1), 0.1 * G**i] ms with
G = 1.01 / 0.99, so bin 781 ends past 10 min and the bins go on beyond it. A bin reports
2 * upper / (G + 1), within 1 % of every latency in it (within 0.05 ms for bin 0), so a
percentile read from a histogram is within that error of the nearest-rank percentile.
"""

from __future__ import annotations

import math
import operator
import re
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from itertools import accumulate, repeat

import orjson

RELATIVE_ERROR = 0.01
FLOOR_MS = 0.1
CEILING_MS = 1e12  # ~31 years: a larger (or infinite) latency counts in this one's bin
GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
LOG_GAMMA = math.log(GAMMA)

Histogram = dict[int, int]  # bin -> count
# Counts by bin (bin 0 first), as a report adds them up: a flat array of C integers. A month's report
# holds one per group (1,500 of ~560 bins by team,deployment) while it runs; as lists of Python ints
# each young collection meanwhile visited every count (850,000 references: gen1 collections of ~6 ms
# of CPU, the probes' maxima, issue 14); the collector sees an array as one object, its counts not.


def zeros(n: int) -> array[int]:
    """`n` bins of count 0."""
    return array("q", bytes(8 * n))


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
    """`percentile` at each of `fractions` (in any order), from one pass over the bins in order."""
    return count_percentiles(counted(histogram), fractions)


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


# Packed histograms (PostgreSQL's rollups, migration 0023): one exact integer holding bin i's count
# in its i-th field of FIELD_DIGITS decimal digits, so the database adds histograms by adding
# numbers (SUM over NUMERIC, no bin expanded), exactly while no bin of a sum reaches 10**12
# records. Differences add up too: a packed sum whose bins are all counts is that histogram.
FIELD_DIGITS = 12
FIELD = 10**FIELD_DIGITS


def pack(histogram: Mapping[int, int]) -> int:
    """The packed integer of a histogram of non-negative counts, each under 10**12."""
    if any(not 0 <= count < FIELD for count in histogram.values()):
        raise ValueError("a packed histogram holds counts from 0 to 10**12 - 1")
    return sum(count * FIELD**index for index, count in histogram.items())


def unpack(packed: object) -> array[int]:
    """The counts by bin (bin 0 first) of a packed integer: its decimal text (as a report reads a
    NUMERIC sum), an int or a Decimal; None: empty. A month's report unpacks one per group (~560
    fields each at 10M records), a short window's groups have a few bins set among as many fields:
    only the fields that are not zero are converted (found by one C-level regex scan; converting
    every field cost a 1-hour report ~0.16 s at 1,500 groups)."""
    if packed is None:
        return zeros(0)
    text = packed if isinstance(packed, str) else format(Decimal(packed), "f")  # type: ignore[arg-type]
    if text.startswith("-") or "." in text:  # not a sum of packed histograms
        raise ValueError(f"not a packed histogram: {packed!r}")
    fields = -(-len(text) // FIELD_DIGITS)
    text = text.zfill(fields * FIELD_DIGITS)
    counts = zeros(fields)
    top = fields - 1
    for field in _SET_FIELD.finditer(text):  # each match starts on a field's edge: it takes whole fields
        counts[top - field.start(1) // FIELD_DIGITS] = int(field.group(1))
    return counts


# Zero fields, skipped, then one field (zero only when it is the last): the fields that are set.
_SET_FIELD = re.compile(rf"(?:0{{{FIELD_DIGITS}}})*([0-9]{{{FIELD_DIGITS}}})")


def counted(histogram: Mapping[int, int] | Mapping[str, int]) -> array[int]:
    """A histogram's counts by bin (bin 0 first); its bins may be numbers or their JSON text."""
    counts = zeros(max(map(int, histogram), default=-1) + 1)
    for index, count in histogram.items():
        counts[int(index)] += count
    return counts


def total_counts(histograms: Iterable[Sequence[int]]) -> array[int]:
    """Histograms' counts by bin, added bin by bin, one histogram per C-level step: a month's report
    adds 1,500 groups' ~560 bins in a worker thread, and a single C call over all of them (say
    `zip_longest` summed into an array) would hold the GIL 20-40 ms, the event loop waiting as long."""
    total: list[int] = []
    for counts in histograms:
        if len(total) < len(counts):
            total.extend(repeat(0, len(counts) - len(total)))
        total[: len(counts)] = map(operator.add, total, counts)
    return array("q", total)


def count_percentiles(counts: Sequence[int], fractions: Sequence[float]) -> tuple[float | None, ...]:
    """`percentiles` of a histogram given as counts by bin: each rank found by bisecting the
    running totals."""
    running = list(accumulate(counts))
    n = running[-1] if running else 0
    if n <= 0:
        return tuple(None for _ in fractions)
    return tuple(value_of(bisect_left(running, max(1, math.ceil(f * n)))) for f in fractions)
