"""The semantic index with hand-made unit vectors: threshold, guard, scopes, TTL, bounds."""

from __future__ import annotations

import numpy as np
import pytest

from costwarden.semantic.index import SemanticIndex, Vector
from tests.unit.clock import Clock


def unit(*values: float) -> Vector:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_the_most_similar_over_the_threshold_that_the_guard_allows() -> None:
    index = SemanticIndex(0.9, 100)
    index.add("s", unit(1, 0, 0), "Tips for Japan", "k-japan", 60)
    index.add("s", unit(1, 0.3, 0), "3 tips for Japan", "k-three", 60)
    found = index.search("s", unit(1, 0.05, 0), "Tips for Japan, please")
    assert found is not None and found[0] == "k-japan" and found[1] > 0.99
    # The closest entry has another number: the guard skips it for the next one over the threshold.
    skipped = index.search("s", unit(1, 0.3, 0), "Tips for Japan")
    assert skipped is not None and skipped[0] == "k-japan" and skipped[1] == pytest.approx(0.958, abs=1e-3)
    assert index.search("s", unit(0, 1, 0), "Tips for Japan") is None  # under the threshold
    assert index.search("other scope", unit(1, 0, 0), "Tips for Japan") is None


def test_entries_expire_and_the_oldest_go_first() -> None:
    clock = Clock(0.0)
    index = SemanticIndex(0.5, 2, clock)
    index.add("a", unit(1, 0), "one", "k1", 10)
    index.add("b", unit(1, 0), "one", "k2", 10)
    index.add("b", unit(0, 1), "two", "k3", 10)
    assert len(index) == 2 and index.search("a", unit(1, 0), "one") is None  # k1 evicted
    clock.now = 10.0
    assert index.search("b", unit(1, 0), "one") is None  # expired
    index.add("b", unit(1, 1), "three", "k4", 10)
    assert len(index) == 1
