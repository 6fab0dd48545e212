"""The one place that picks a storage adapter from the config's ledger URL."""

from __future__ import annotations

from costwarden.ports import Store
from costwarden.storage.postgres import PostgresStore
from costwarden.storage.sqlite import SQLiteStore


def open_store(url: str) -> Store:
    """An unopened store for `sqlite:///path` or `postgresql://...` (call `await store.open()`)."""
    if url.startswith("sqlite:///"):
        return SQLiteStore.from_url(url)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore.from_url(url)
    raise ValueError(f"unsupported ledger URL {url!r}: use sqlite:///path or postgresql://...")
