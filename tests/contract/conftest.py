"""The `store` fixture: every Store adapter, opened on an empty database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from costwarden.ports import Store
from costwarden.storage.postgres import PostgresStore
from costwarden.storage.sqlite import SQLiteStore


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    adapter: Store
    if request.param == "sqlite":
        adapter = SQLiteStore(str(tmp_path / "ledger.db"))
    else:
        url: str = request.getfixturevalue("postgres_url")
        adapter = PostgresStore(url)
    await adapter.open()
    if isinstance(adapter, PostgresStore):
        conn = await asyncpg.connect(adapter.dsn)
        await conn.execute(
            "TRUNCATE ledger, ledger_quarantine, api_keys, alerts, budgets, rollup, rollup_key, rollup_delta"
        )
        await conn.close()
    yield adapter
    await adapter.close()
