"""The gateway's in-memory view of valid keys, refreshed from the store in the background.

Resolving a key on the request path is a dict lookup once the key has been verified; a revoked
key stops working at the next refresh (every `key_refresh_seconds`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from costwarden.domain.keys import KeyIdentity, StoredKey, split_key, verify
from costwarden.ports import KeyStore
from costwarden.protocols.errors import UNAUTHENTICATED, GatewayError

log = logging.getLogger(__name__)
_MAX_CACHE = 100_000


class KeyRing:
    def __init__(self, store: KeyStore, declared: list[StoredKey], refresh_s: float) -> None:
        self._store = store
        self._declared = {k.identity.key_id: k for k in declared}
        self._refresh_s = refresh_s
        self._keys: dict[str, StoredKey] = dict(self._declared)
        self._verified: dict[str, KeyIdentity] = {}
        self._task: asyncio.Task[None] | None = None

    def resolve(self, token: str) -> KeyIdentity | None:
        identity = self._verified.get(token)
        if identity is not None:
            return identity
        parts = split_key(token)
        stored = self._keys.get(parts[0]) if parts is not None else None
        if stored is None or parts is None:
            return self._declared_raw(token)
        if not verify(stored, parts[1]):
            return None
        if stored.revoked_at is not None:
            raise GatewayError(401, "revoked_api_key", "the API key has been revoked", kind=UNAUTHENTICATED)
        return self._remember(token, stored.identity)

    def _declared_raw(self, token: str) -> KeyIdentity | None:
        # Config keys may be any string, not only `cw_<id>_<secret>`.
        for stored in self._declared.values():
            if verify(stored, token):
                return self._remember(token, stored.identity)
        return None

    def _remember(self, token: str, identity: KeyIdentity) -> KeyIdentity:
        if len(self._verified) >= _MAX_CACHE:
            self._verified.clear()
        self._verified[token] = identity
        return identity

    async def refresh(self) -> None:
        stored = await self._store.list_keys()
        keys = {k.identity.key_id: k for k in stored}
        keys.update(self._declared)
        revoked = {k for k, v in keys.items() if v.revoked_at is not None}
        self._keys = keys
        if revoked:
            self._verified = {t: i for t, i in self._verified.items() if i.key_id not in revoked}

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="costwarden-keyring")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                await self.refresh()
            except Exception:
                log.exception("could not refresh keys; keeping the last known set")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
