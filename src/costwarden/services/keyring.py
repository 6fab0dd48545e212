"""The gateway's in-memory view of valid keys, refreshed from the store in the background.

Resolving a key on the request path is a dict lookup once the key has been verified. Each refresh
reads only the keys created or revoked since the last one (the database's change sequence, not a
clock), so a revocation or a key made on another replica takes effect within `key_refresh_seconds`
whatever the number of keys; rows are decoded in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from costwarden.aio import PeriodicTask
from costwarden.domain.keys import KeyIdentity, StoredKey, split_key, verify
from costwarden.ports import KeyStore
from costwarden.protocols.errors import UNAUTHENTICATED, GatewayError

log = logging.getLogger(__name__)
_MAX_CACHE = 100_000


def _index(stored: Iterable[StoredKey], declared: dict[str, StoredKey]) -> dict[str, StoredKey]:
    keys = {k.identity.key_id: k for k in stored}
    keys.update(declared)  # a key declared in config wins over a stored one of the same id
    return keys


class KeyRing:
    def __init__(
        self,
        store: KeyStore,
        declared: list[StoredKey],
        refresh_s: float,
        full_refresh_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._declared = {k.identity.key_id: k for k in declared}
        self._full_refresh_s = full_refresh_s
        self._clock = clock
        self._keys: dict[str, StoredKey] = dict(self._declared)
        # token -> the StoredKey it was verified against; valid while that very object is current.
        self._verified: dict[str, StoredKey] = {}
        self._cursor = 0
        self._loaded_at: float | None = None
        self._task = PeriodicTask(
            "costwarden-keyring", self.refresh, refresh_s, log=log,
            failure="could not refresh keys; keeping the last known set", wait_first=True,
        )  # fmt: skip

    def resolve(self, token: str) -> KeyIdentity | None:
        cached = self._verified.get(token)
        if cached is not None and cached.revoked_at is None and self._keys.get(cached.identity.key_id) is cached:
            return cached.identity
        parts = split_key(token)
        stored = self._keys.get(parts[0]) if parts is not None else None
        if stored is None or parts is None:
            return self._declared_raw(token)
        if not verify(stored, parts[1]):
            return None
        if stored.revoked_at is not None:
            raise GatewayError(401, "revoked_api_key", "the API key has been revoked", kind=UNAUTHENTICATED)
        return self._remember(token, stored)

    def identity(self, key_id: str) -> KeyIdentity | None:
        """The identity of a known, unrevoked key by its id (a batch job runs as its batch's key)."""
        stored = self._keys.get(key_id)
        if stored is None or stored.revoked_at is not None:
            return None
        return stored.identity

    def _declared_raw(self, token: str) -> KeyIdentity | None:
        # Config keys may be any string, not only `cw_<id>_<secret>`.
        for stored in self._declared.values():
            if verify(stored, token):
                return self._remember(token, stored)
        return None

    def _remember(self, token: str, stored: StoredKey) -> KeyIdentity:
        if len(self._verified) >= _MAX_CACHE:
            self._verified.clear()
        self._verified[token] = stored
        return stored.identity

    def active(self, key_id: str) -> bool:
        """The key is known and not revoked, as of the last refresh."""
        stored = self._keys.get(key_id)
        return stored is not None and stored.revoked_at is None

    @property
    def cursor(self) -> int:
        """The newest key change this ring has applied."""
        return self._cursor

    def __len__(self) -> int:
        return len(self._keys)

    async def refresh(self) -> None:
        """Apply the keys changed since the last refresh; reload all of them on the first call,
        every `full_refresh_s` (rows changed by hand or by an older gateway), or when the store's
        change sequence went back (a restore)."""
        now = self._clock()
        if self._loaded_at is None or now - self._loaded_at >= self._full_refresh_s:
            await self.reload()
            return
        changes = await self._store.key_changes(self._cursor)
        if changes.cursor < self._cursor:
            log.warning(
                "the key table's change sequence went back (%d < %d): reloading every key", changes.cursor, self._cursor
            )
            await self.reload()
            return
        keys = self._keys
        for key in changes.keys:  # a handful per refresh: cheap enough for the loop
            if key.identity.key_id not in self._declared:
                keys[key.identity.key_id] = key
        self._cursor = changes.cursor

    async def reload(self) -> None:
        started = self._clock()
        changes = await self._store.key_changes(0)
        keys = await asyncio.to_thread(_index, changes.keys, self._declared)
        old, self._keys = self._keys, keys
        self._cursor = changes.cursor
        self._loaded_at = started
        del changes, keys
        # Freeing 100k keys takes tens of ms: let a worker thread drop the last reference.
        await asyncio.to_thread(old.clear)

    def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()
