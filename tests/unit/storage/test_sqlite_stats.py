"""SQLite planner statistics are kept: ANALYZE runs at open and again as the ledger grows, so a
short-window report is planned with the ledger's real size, not the guess of an unanalysed one."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from costwarden.domain.record import UsageRecord
from costwarden.storage import sqlite as sqlite_store
from costwarden.storage.sqlite import SQLiteStore
from tests.unit.storage.sample import record


def ledger_stats(path: Path) -> dict[str, int]:
    """Rows sqlite_stat1 says each ledger index holds (its first number)."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'ledger'").fetchall()
    conn.close()
    return {idx: int(stat.split()[0]) for idx, stat in rows}


def batch(first: int, n: int) -> list[UsageRecord]:
    return [replace(record(f"r{i}"), started_at=1_700_000_000.0 + i) for i in range(first, first + n)]


async def test_a_ledger_is_analysed_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    store = SQLiteStore(str(path))
    await store.open()
    await store.write(batch(0, 300))
    await store.close()
    reopened = SQLiteStore(str(path))
    await reopened.open()
    await reopened.close()
    stats = ledger_stats(path)
    assert stats["ledger_started_at"] == 300 and stats["ledger_team"] == 300


async def test_the_statistics_follow_a_growing_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "_REANALYZE_ROWS", 100)
    path = tmp_path / "ledger.db"
    store = SQLiteStore(str(path))
    await store.open()
    try:
        await store.write(batch(0, 150))  # 150 new rows >= max(100, 0): analysed
        assert ledger_stats(path)["ledger_started_at"] == 150
        await store.write(batch(150, 100))  # 100 < 150 rows at the last ANALYZE: not yet
        assert ledger_stats(path)["ledger_started_at"] == 150
        await store.write(batch(250, 60))  # 160 since the last one >= 150: analysed again
        assert ledger_stats(path)["ledger_started_at"] == 310
        await store.write(batch(0, 310))  # a replay stores nothing and grows nothing
        assert ledger_stats(path)["ledger_started_at"] == 310
    finally:
        await store.close()
