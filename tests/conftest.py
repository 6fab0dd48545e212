"""Shared test policy: a test that needs a missing service skips on a laptop and fails in CI."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import pytest
from hypothesis import settings

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Property tests check results, not speed: on a shared, loaded 2-core machine a per-example deadline
# only makes them flaky (speed is measured by bench/, not by tests).
settings.register_profile("costwarden", deadline=None)
settings.load_profile("costwarden")


def need(available: bool, what: str) -> None:
    """Skip with a clear reason when `what` is missing; fail instead when running in CI."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {what} is not available", pytrace=False)
    pytest.skip(f"{what} is not available on this machine")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


PG_ADMIN = "postgresql://127.0.0.1:5432/test"


def _admin(sql: str) -> None:
    async def execute() -> None:
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    # In a thread of its own: the caller may be inside a running loop (an async test or fixture).
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, execute()).result()


@contextlib.contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A PostgreSQL database of the caller's own, `<prefix>_<unique>`, dropped at the end; yields
    its URL. Needs PostgreSQL on 127.0.0.1:5432 (skips on a laptop, fails in CI)."""
    need(port_open("127.0.0.1", 5432), "PostgreSQL on 127.0.0.1:5432")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://127.0.0.1:5432/{name}"
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with scratch_database("costwarden_test") as url:
        yield url


async def drop_costwarden_tables(url: str) -> None:
    """An empty database for a test that starts gateways on PostgreSQL (they migrate it again)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "DROP TABLE IF EXISTS ledger, ledger_quarantine, api_keys, alerts, budgets, rollup, rollup_key, "
            "rollup_delta, rollup_team, rollup_deployment, rollup_key_total, costwarden_schema, batch_files, batches, "
            "batch_jobs, job_callbacks"
        )
        await conn.execute("DROP FUNCTION IF EXISTS costwarden_hist_merge(jsonb, jsonb)")
    finally:
        await conn.close()
