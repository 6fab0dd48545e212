"""The `store` and `queue` fixtures: every Store and batch queue adapter, opened on an empty database;
and the loopback receiver of signed POSTs (job callbacks)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from costwarden.ports import BatchBackend, Store
from costwarden.storage.postgres import PostgresStore
from costwarden.storage.queue_postgres import PostgresQueue
from costwarden.storage.queue_sqlite import SQLiteQueue
from costwarden.storage.sqlite import SQLiteStore
from tests.integration.receiver import receiver, session  # noqa: F401  (fixtures)


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
            "TRUNCATE ledger, ledger_quarantine, api_keys, alerts, budgets, rollup, rollup_key, rollup_delta, "
            "rollup_team, rollup_deployment, rollup_key_total"
        )
        await conn.close()
    yield adapter
    await adapter.close()


def open_adapter(kind: str, tmp_path: Path, url: str | None) -> BatchBackend:
    return SQLiteQueue(str(tmp_path / "queue.db")) if kind == "sqlite" else PostgresQueue(url or "")


@pytest.fixture(params=["sqlite", "postgres"])
async def queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BatchBackend]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    if url is not None:
        conn = await asyncpg.connect(url)
        await conn.execute("DROP TABLE IF EXISTS batch_files, batches, batch_jobs, job_callbacks")
        await conn.close()
    adapter = open_adapter(request.param, tmp_path, url)
    await adapter.open()
    yield adapter
    await adapter.close()
