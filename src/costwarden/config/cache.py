"""The response cache's config: global (`cache:`) and a deployment's overrides (`deployments[].cache`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from costwarden.config.base import Model
from costwarden.domain.response_cache import CachePolicy, Namespace

_MONTH_S = 31 * 86400


class CacheConfig(Model):
    """`cache:` at the top of the file: the backend and the defaults every deployment inherits.

    `backend: memory` is one process's bounded LRU (`max_entries`, `max_bytes`); `redis` is shared
    by every replica (`url`, else the top-level `state` URL), bounded by Redis's own maxmemory.
    """

    enabled: bool = False
    ttl_seconds: float = Field(default=300.0, gt=0, le=_MONTH_S)
    namespace: Literal["team", "global"] = "team"
    backend: Literal["memory", "redis"] = "memory"
    url: str | None = Field(default=None, pattern=r"^rediss?://")
    max_entries: int = Field(default=10_000, ge=1, le=10_000_000)
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_entry_bytes: int = Field(default=1024 * 1024, ge=256)  # larger answers are not stored
    retry_after_seconds: float = Field(default=1.0, ge=0, le=60)  # after a backend error, skip it this long
    # The semantic cache (deployments opt in with `cache.semantic: true`; the `semantic` extra).
    semantic_threshold: float = Field(default=0.95, ge=0.5, le=1.0)  # cosine similarity for a hit
    semantic_max_entries: int = Field(default=10_000, ge=1, le=1_000_000)  # prompts indexed per process


class DeploymentCache(Model):
    """A deployment's overrides of the global `cache:` (unset: inherited)."""

    enabled: bool | None = None
    ttl_seconds: float | None = Field(default=None, gt=0, le=_MONTH_S)
    namespace: Literal["team", "global"] | None = None
    semantic: bool = False  # also answer prompts that mean the same (docs/actions.md): opt in

    def policy(self, defaults: CacheConfig) -> CachePolicy | None:
        """The deployment's cache policy, its overrides over the defaults; None when not cached."""
        enabled = defaults.enabled if self.enabled is None else self.enabled
        if not enabled:
            return None
        ttl = defaults.ttl_seconds if self.ttl_seconds is None else self.ttl_seconds
        return CachePolicy(ttl, Namespace(self.namespace or defaults.namespace), self.semantic)
