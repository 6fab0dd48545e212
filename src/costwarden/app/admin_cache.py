"""Admin API routes of the response cache: its status, and a purge (one team's answers, or all)."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from fastapi.params import Depends
from pydantic import BaseModel, Field

from costwarden.app.admin_models import refusals
from costwarden.app.admin_refusals import cache_answers
from costwarden.app.runtime import Runtime
from costwarden.ports import ResponseCache
from costwarden.services.cache import cache_status, purge_cache


class CacheStatus(BaseModel):
    backend: str = Field(description="memory (this gateway's own) | redis (shared by replicas)")
    namespace: str = Field(description="team (answers shared within a team) | global")
    entries: int
    bytes: int | None = Field(description="bytes of answers held; null for Redis")


class CachePurged(BaseModel):
    purged: int = Field(description="cached answers dropped")


def add_cache_routes(api: FastAPI, runtime: Runtime, guard: list[Depends]) -> None:
    def cache() -> ResponseCache:
        if runtime.response_cache is None:
            raise HTTPException(404, "no deployment caches responses (cache.enabled)")
        return runtime.response_cache

    @api.get(
        "/admin/v1/cache",
        dependencies=guard,
        summary="The response cache: backend and entries",
        response_model=CacheStatus,
        responses=refusals(404, 503),
    )
    async def get_cache() -> CacheStatus:
        with cache_answers():
            return CacheStatus(**await cache_status(cache(), runtime.config.cache))

    @api.post(
        "/admin/v1/cache/purge",
        dependencies=guard,
        summary="Drop cached answers: one team's (`team`), or all",
        response_model=CachePurged,
        responses=refusals(404, 503),
    )
    async def post_purge(team: str | None = None) -> CachePurged:
        with cache_answers():
            return CachePurged(purged=await purge_cache(cache(), team))
