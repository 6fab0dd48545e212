"""The cost of unpacking one group's packed latency histogram (PostgreSQL's rollups, migration 0023),
by how many of its fields are set: a short window's groups have a few bins set among ~560 fields, a
month's many. Compares `latency_histogram.unpack` with the first form, which converted every field.

    PYTHONPATH=src .venv/bin/python bench/histogram_unpack.py
"""

from __future__ import annotations

import random
import sys
import timeit

from costwarden.domain import latency_histogram as lh

FIELD_DIGITS = lh.FIELD_DIGITS


def every_field(text: str) -> list[int]:
    """The first form (before this bench): each of the text's fields cut and converted."""
    width = -(-len(text) // FIELD_DIGITS) * FIELD_DIGITS
    text = text.zfill(width)
    fields = map(slice, range(width - FIELD_DIGITS, -1, -FIELD_DIGITS), range(width, 0, -FIELD_DIGITS))
    return list(map(int, map(text.__getitem__, fields)))


def main() -> None:
    sys.set_int_max_str_digits(0)  # a packed histogram of 561 fields has 6,732 digits
    rng = random.Random(1)
    print("bins set  every field (us)  set fields only (us)")
    for n in (3, 30, 150, 300):
        histogram = {560: 1} | {rng.randint(250, 560): rng.randint(1, 10**6) for _ in range(n)}
        text = str(lh.pack(histogram))
        assert every_field(text) == lh.unpack(text)
        before = min(timeit.repeat(lambda t=text: every_field(t), number=2000, repeat=7)) / 2000 * 1e6
        after = min(timeit.repeat(lambda t=text: lh.unpack(t), number=2000, repeat=7)) / 2000 * 1e6
        print(f"{len(histogram):8d}  {before:17.1f}  {after:20.1f}")


if __name__ == "__main__":
    main()
