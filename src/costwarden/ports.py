"""The ports: small typed protocols that adapters in storage/ (and later alerts/) implement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from costwarden.domain.keys import StoredKey
from costwarden.domain.record import UsageRecord
from costwarden.domain.report import SpendQuery, SpendReport


class LedgerStore(Protocol):
    """The durable ledger. Money in USD (Decimal, nano-dollar exact); times in Unix seconds.

    `write` is idempotent on `request_id`: writing a record that is already stored is a no-op,
    so replaying a spool never double-counts. It returns how many records were new.
    """

    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    async def close(self) -> None: ...

    async def write(self, records: Sequence[UsageRecord]) -> int: ...

    async def spend(self, query: SpendQuery) -> SpendReport: ...

    async def records(self, start: float | None, end: float | None, limit: int) -> list[UsageRecord]:
        """Raw records in [start, end), oldest first, at most `limit`."""

    async def ping(self) -> bool: ...


class KeyStore(Protocol):
    """API keys as stored: identity, salted hash, revocation. Never the key itself."""

    async def add_key(self, key: StoredKey) -> None: ...

    async def list_keys(self) -> list[StoredKey]: ...

    async def revoke_key(self, key_id: str, at: float) -> bool:
        """Mark the key revoked at `at`; False if no such key."""


class Store(LedgerStore, KeyStore, Protocol):
    """What one database adapter provides: the ledger and the keys, in the same database."""
