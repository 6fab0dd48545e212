"""Incremental key refresh against every store: the change cursor, two replicas, clock skew, and
databases made before the change sequence existed (issue 14)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import asyncpg
import pytest

from costwarden.domain.keys import KeyIdentity, StoredKey, format_key, hash_secret
from costwarden.ports import Store
from costwarden.protocols.errors import GatewayError
from costwarden.services.keyring import KeyRing
from costwarden.storage.migrations import SCHEMA_TABLE, migrations, statements
from costwarden.storage.postgres import PostgresStore
from costwarden.storage.sqlite import SQLiteStore
from tests.conftest import scratch_database


def make_key(key_id: str, secret: str = "s3cret", created_at: float | None = None) -> StoredKey:
    identity = KeyIdentity(key_id=key_id, team="search", project="ranking", environment="prod")
    salt = f"salt-{key_id}"
    return StoredKey(identity, salt, hash_secret(salt, secret), time.time() if created_at is None else created_at)


def token(key_id: str, secret: str = "s3cret") -> str:
    return format_key(key_id, secret)


def ids(keys: tuple[StoredKey, ...]) -> list[str]:
    return [k.identity.key_id for k in keys]


async def test_changes_since_a_cursor_are_only_the_new_and_the_revoked(store: Store) -> None:
    empty = await store.key_changes(0)
    assert empty.keys == () and empty.cursor == 0
    await store.add_key(make_key("k1"))
    await store.add_key(make_key("k2"))
    first = await store.key_changes(0)
    assert ids(first.keys) == ["k1", "k2"] and first.cursor > 0
    assert (await store.key_changes(first.cursor)).keys == ()
    await store.add_key(make_key("k3"))
    assert await store.revoke_key("k1", 1_800_000_000.0)
    later = await store.key_changes(first.cursor)
    assert ids(later.keys) == ["k3", "k1"] and later.cursor > first.cursor  # in change order
    assert later.keys[1].revoked_at == 1_800_000_000.0
    # A refused revocation (unknown or already revoked) is not a change.
    assert not await store.revoke_key("k1", 1_800_000_100.0)
    assert not await store.revoke_key("nope", 1_800_000_100.0)
    assert (await store.key_changes(later.cursor)) == later.__class__((), later.cursor)
    # A duplicate id is refused and takes no change number either.
    with pytest.raises((sqlite3.IntegrityError, asyncpg.UniqueViolationError)):
        await store.add_key(make_key("k2"))
    assert (await store.key_changes(later.cursor)).keys == ()
    assert sorted(ids(tuple(await store.list_keys()))) == ["k1", "k2", "k3"]


async def _second_replica(store: Store, tmp_path: Path) -> Store:
    other: Store = PostgresStore(store.dsn) if isinstance(store, PostgresStore) else SQLiteStore(store.path)  # type: ignore[attr-defined]
    await other.open()
    return other


async def test_a_key_made_or_revoked_on_a_replica_with_a_skewed_clock_is_seen(store: Store, tmp_path: Path) -> None:
    ring = KeyRing(store, [], refresh_s=2.0, full_refresh_s=3600.0)
    await ring.refresh()
    other = await _second_replica(store, tmp_path)
    try:
        # The other replica's clock is a day behind: its key looks older than anything we have seen.
        await other.add_key(make_key("late", created_at=time.time() - 86_400))
        assert ring.resolve(token("late")) is None
        await ring.refresh()
        identity = ring.resolve(token("late"))
        assert identity is not None and identity.team == "search"
        # Its revocation, stamped a day in the past too, still lands at the next refresh.
        assert await other.revoke_key("late", time.time() - 86_400)
        await ring.refresh()
        with pytest.raises(GatewayError) as refused:
            ring.resolve(token("late"))
        assert refused.value.code == "revoked_api_key"
    finally:
        await other.close()


async def test_a_key_made_and_revoked_between_two_refreshes_never_works(store: Store) -> None:
    ring = KeyRing(store, [], refresh_s=2.0, full_refresh_s=3600.0)
    await ring.refresh()
    await store.add_key(make_key("brief"))
    await store.revoke_key("brief", time.time())
    await ring.refresh()
    with pytest.raises(GatewayError):
        ring.resolve(token("brief"))


async def test_a_revoked_key_stays_revoked_across_later_incremental_refreshes(store: Store) -> None:
    ring = KeyRing(store, [], refresh_s=2.0, full_refresh_s=3600.0)
    await store.add_key(make_key("used"))
    await ring.refresh()
    assert ring.resolve(token("used")) is not None  # verified and cached
    await store.revoke_key("used", time.time())
    await ring.refresh()
    for _ in range(2):  # the cached verification does not outlive the revocation
        with pytest.raises(GatewayError):
            ring.resolve(token("used"))
    await store.add_key(make_key("other"))
    await ring.refresh()  # an unrelated change does not bring the revoked key back
    with pytest.raises(GatewayError):
        ring.resolve(token("used"))
    assert ring.resolve(token("other")) is not None


async def _delete_key(store: Store, key_id: str) -> None:
    if isinstance(store, PostgresStore):
        conn = await asyncpg.connect(store.dsn)
        try:
            await conn.execute("DELETE FROM api_keys WHERE key_id = $1", key_id)
        finally:
            await conn.close()
    else:
        with sqlite3.connect(store.path) as conn:  # type: ignore[attr-defined]
            conn.execute("DELETE FROM api_keys WHERE key_id = ?", (key_id,))


async def test_a_key_revoked_then_listed_again_with_a_new_secret(store: Store) -> None:
    """An operator deletes the revoked row and lists the id again: the old secret stays dead."""
    ring = KeyRing(store, [], refresh_s=2.0, full_refresh_s=3600.0)
    await store.add_key(make_key("reused", secret="old"))
    await ring.refresh()
    assert ring.resolve(token("reused", "old")) is not None
    await store.revoke_key("reused", time.time())
    await _delete_key(store, "reused")
    await store.add_key(make_key("reused", secret="new"))
    await ring.refresh()
    assert ring.resolve(token("reused", "old")) is None
    identity = ring.resolve(token("reused", "new"))
    assert identity is not None and identity.key_id == "reused"


async def test_a_change_sequence_that_went_back_reloads_every_key(store: Store) -> None:
    """The newest row deleted by hand (or a restore): the cursor falls, the ring reloads."""
    ring = KeyRing(store, [], refresh_s=2.0, full_refresh_s=3600.0)
    await store.add_key(make_key("keep"))
    await store.add_key(make_key("gone"))
    await ring.refresh()
    assert ring.resolve(token("gone")) is not None
    before = ring.cursor
    await _delete_key(store, "gone")
    await ring.refresh()
    assert ring.cursor < before
    assert ring.resolve(token("gone")) is None and ring.resolve(token("keep")) is not None


async def test_a_full_reload_comes_on_schedule(store: Store) -> None:
    """A row changed outside the change sequence (an older gateway, a hand edit) is picked up by
    the periodic full reload."""
    now = [0.0]
    ring = KeyRing(store, [], refresh_s=2.0, full_refresh_s=60.0, clock=lambda: now[0])
    await store.add_key(make_key("edited"))
    await ring.refresh()
    assert ring.resolve(token("edited")) is not None
    if isinstance(store, PostgresStore):
        conn = await asyncpg.connect(store.dsn)
        await conn.execute("UPDATE api_keys SET revoked_at = 1 WHERE key_id = 'edited'")
        await conn.close()
    else:
        with sqlite3.connect(store.path) as db:  # type: ignore[attr-defined]
            db.execute("UPDATE api_keys SET revoked_at = 1 WHERE key_id = 'edited'")
    now[0] = 30.0
    await ring.refresh()
    assert ring.resolve(token("edited")) is not None  # invisible to the incremental read
    now[0] = 61.0
    await ring.refresh()
    with pytest.raises(GatewayError):
        ring.resolve(token("edited"))


OLD_KEY_COLUMNS = (
    "key_id, name, team, project, environment, tags, deployments, allow_client_tags, "
    "salt, secret_hash, created_at, revoked_at"
)


def _old_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE {SCHEMA_TABLE} (version INTEGER PRIMARY KEY, name TEXT, applied_at REAL)")
        for m in migrations("sqlite"):
            if m.version < 8:
                for statement in statements(m.sql):
                    conn.execute(statement)
                conn.execute(f"INSERT INTO {SCHEMA_TABLE} VALUES (?, ?, 0)", (m.version, m.name))
        for i, revoked in enumerate((None, 1_800_000_000.0)):
            conn.execute(
                f"INSERT INTO api_keys ({OLD_KEY_COLUMNS}) "
                "VALUES (?, '', 'search', 'ranking', 'prod', '{}', NULL, 0, ?, ?, ?, ?)",
                (f"old{i}", f"salt-old{i}", hash_secret(f"salt-old{i}", "s3cret"), 1_700_000_000.0 + i, revoked),
            )


async def test_an_existing_sqlite_database_is_numbered_by_the_migration(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _old_sqlite(path)
    store = SQLiteStore(str(path))
    await store.open()
    try:
        everything = await store.key_changes(0)
        assert sorted(ids(everything.keys)) == ["old0", "old1"] and everything.cursor >= 2
        await store.add_key(make_key("new"))
        after = await store.key_changes(everything.cursor)
        assert ids(after.keys) == ["new"]
        ring = KeyRing(store, [], refresh_s=2.0)
        await ring.refresh()
        assert ring.resolve(token("old0")) is not None and ring.resolve(token("new")) is not None
        with pytest.raises(GatewayError):
            ring.resolve(token("old1"))
    finally:
        await store.close()


async def test_an_existing_postgres_database_is_numbered_by_the_migration() -> None:
    # A database of its own: the session's shared one is already migrated.
    with scratch_database("costwarden_keys") as url:
        conn = await asyncpg.connect(url)
        await conn.execute(
            f"CREATE TABLE {SCHEMA_TABLE} (version INTEGER PRIMARY KEY, name TEXT, applied_at TIMESTAMPTZ)"
        )
        for m in migrations("postgres"):
            if m.version < 8:
                for statement in statements(m.sql):
                    await conn.execute(statement)
                await conn.execute(f"INSERT INTO {SCHEMA_TABLE} (version, name) VALUES ($1, $2)", m.version, m.name)
        await conn.execute(
            f"INSERT INTO api_keys ({OLD_KEY_COLUMNS}) VALUES ('old0', '', 'search', 'ranking', 'prod', '{{}}', NULL, "
            "false, 'salt-old0', $1, 1700000000, NULL)",
            hash_secret("salt-old0", "s3cret"),
        )
        await conn.close()
        store = PostgresStore(url)
        await store.open()
        try:
            everything = await store.key_changes(0)
            assert ids(everything.keys) == ["old0"] and everything.cursor >= 1
            await store.add_key(make_key("new"))
            assert ids((await store.key_changes(everything.cursor)).keys) == ["new"]
        finally:
            await store.close()
