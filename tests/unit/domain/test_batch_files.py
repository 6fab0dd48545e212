"""What one retention step may free: files up to a byte budget, never none."""

from __future__ import annotations

from costwarden.domain.batch_files import Pruned, within_bytes


def test_files_are_taken_oldest_first_up_to_the_byte_budget() -> None:
    files = [("a", 40), ("b", 50), ("c", 10), ("d", 1)]
    assert within_bytes(files, 100) == ["a", "b", "c"]
    assert within_bytes(files, 89) == ["a"]  # in order: a smaller later file does not jump the queue
    assert within_bytes([("huge", 10**9), ("b", 1)], 100) == ["huge"]  # one file over the budget still goes
    assert within_bytes([], 100) == []


def test_pruned_counts_add_up() -> None:
    assert Pruned(1, 2, 3) + Pruned(jobs=4) == Pruned(1, 6, 3)
    assert Pruned(1, 6, 3).total == 10 and Pruned().total == 0
