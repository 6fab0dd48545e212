"""The ledger's interval rows for allocation on SQLite and PostgreSQL: only served requests of the
named deployments in the window, every page, the same rows from both."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from costwarden.ports import Store
from costwarden.storage import intervals_sql
from costwarden.storage.factory import open_store
from tests.contract.test_store import make_record

RECORDS = [make_record(i, random.Random(i)) for i in range(200)]


@pytest.fixture(params=["sqlite", "postgres"])
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, Store]]:
    sqlite = f"sqlite:///{tmp_path / 'ledger.db'}"
    url = sqlite if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    store = open_store(url)
    await store.open()
    yield url, store
    await store.close()


async def test_interval_rows_page_by_page(ledger: tuple[str, Store], monkeypatch: pytest.MonkeyPatch) -> None:
    url, store = ledger
    await store.write(RECORDS)
    monkeypatch.setattr(intervals_sql, "PAGE", 9)
    start, end = RECORDS[20].started_at, RECORDS[150].started_at
    pages = intervals_sql.ledger_intervals(url, start, end, ["iris"], ["team", "key_id"])
    rows = [r async for page in pages for r in page]
    expected = [
        ("iris", r.started_at, r.ended_at, r.upstream_ms, r.input_tokens + r.output_tokens, r.team, r.key_id)
        for r in RECORDS
        if r.deployment == "iris" and r.upstream_ms is not None and start <= r.started_at < end
    ]
    assert sorted(rows, key=lambda r: float(r[2] or 0)) == expected and len(expected) > 9
    assert await intervals_sql.ledger_interval_count(url, start, end, ["iris"]) == len(expected)  # a bar's total
    assert await intervals_sql.ledger_interval_count(url, start, end, []) == 0
    assert [r async for r in intervals_sql.ledger_intervals(url, start, end, [], ["team"])] == []
    with pytest.raises(ValueError, match="cannot group by"):
        [r async for r in intervals_sql.ledger_intervals(url, start, end, ["iris"], ["team; DROP TABLE ledger"])]
