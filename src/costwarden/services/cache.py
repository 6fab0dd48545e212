"""Response cache administration shared by the admin API and `costwarden cache`: status, purge."""

from __future__ import annotations

from typing import Any

from costwarden.config.cache import CacheConfig
from costwarden.domain.response_cache import Namespace, namespace_of
from costwarden.ports import ResponseCache


async def cache_status(cache: ResponseCache, config: CacheConfig) -> dict[str, Any]:
    """The backend, its entries and the bytes they hold (None where the backend cannot say)."""
    entries, held = await cache.size()
    return {"backend": config.backend, "namespace": config.namespace, "entries": entries, "bytes": held}


async def purge_cache(cache: ResponseCache, team: str | None) -> int:
    """Drop one team's answers (`team`), or every answer; how many were dropped. Answers cached in
    the `global` namespace belong to no team: only a purge of everything drops them."""
    return await cache.purge(None if team is None else namespace_of(Namespace.TEAM, team))
