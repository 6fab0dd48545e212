"""The admin REST API (FastAPI, OpenAPI docs at /admin/docs), guarded by the config's admin token."""

from __future__ import annotations

import secrets
import time
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from costwarden.app.admin_allocation import add_allocation_routes
from costwarden.app.admin_cache import add_cache_routes
from costwarden.app.admin_focus import add_focus_routes
from costwarden.app.admin_governance import add_governance_routes
from costwarden.app.admin_models import KeyCreated, KeyModel, RecordsPage, SpendReportModel, refusals
from costwarden.app.admin_scaling import add_scaling_routes
from costwarden.app.dashboard import ASSETS, add_dashboard
from costwarden.app.runtime import Runtime
from costwarden.app.spend_body import spend_body
from costwarden.domain.report import QueryError, RecordCursor
from costwarden.services import keys as key_service
from costwarden.services.reports import (
    build_query,
    decode_cursor,
    encode_cursor,
    iso_time,
    record_json,
)
from costwarden.services.savings import savings, savings_json

# The Authorize button of /admin/docs; the check itself is `admin` below (401 for a missing token too).
Credentials = Annotated[
    HTTPAuthorizationCredentials | None,
    Depends(HTTPBearer(auto_error=False, description="the admin token (server.admin_token)")),
]


class KeyRequest(BaseModel):
    team: str
    project: str
    environment: str
    name: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    deployments: list[str] | None = None
    allow_client_tags: bool = False


def _mount_docs(api: FastAPI) -> None:
    @api.get("/admin/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        """Swagger UI from the package's own copy (scripts/vendor-web): it works without internet."""
        return get_swagger_ui_html(
            openapi_url="/admin/openapi.json",
            title="costwarden admin API",
            swagger_js_url=f"{ASSETS}/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/vendor/swagger-ui/favicon-32x32.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )


def build_admin(runtime: Runtime) -> FastAPI:
    api = FastAPI(
        title="costwarden admin API",
        version="1",
        docs_url=None,
        openapi_url="/admin/openapi.json",
        redoc_url=None,
    )
    token = runtime.config.server.admin_token

    async def admin(credentials: Credentials) -> None:  # async: FastAPI would run a def in a thread pool
        if not token:
            raise HTTPException(403, "the admin API is disabled: set server.admin_token in the config")
        value = "" if credentials is None else credentials.credentials.strip()
        if not secrets.compare_digest(value.encode(), token.encode()):
            raise HTTPException(401, "send the admin token as `Authorization: Bearer <token>`")

    _mount_docs(api)

    guard = [Depends(admin)]

    @api.get(
        "/admin/v1/spend",
        dependencies=guard,
        summary="Spend by group over a window",
        response_model=SpendReportModel,
        responses=refusals(400),
    )
    async def get_spend(
        group_by: str = "team",
        since: str | None = None,
        from_: Annotated[str | None, Query(alias="from")] = None,
        to: str | None = None,
        where: Annotated[list[str] | None, Query()] = None,
    ) -> Response:
        try:
            query = build_query(group_by, since, from_, to, where or [], time.time())
        except QueryError as exc:
            raise HTTPException(400, str(exc)) from exc
        # A month by team and deployment is thousands of rows: ~0.3 s of Python to add up, check and
        # encode, in the ledger's report process (storage/report_process.py): the same JSON FastAPI makes.
        return Response(await runtime.store.spend_encoded(query, spend_body), media_type="application/json")

    @api.get(
        "/admin/v1/spend/savings",
        dependencies=guard,
        summary="What cost actions saved, by team and action, over a window",
        description="Degraded requests (moved to a cheaper variant) and cache hits (answered from the "
        "response cache): what they cost, what forwarding them as asked would have cost, and the "
        "difference; money as exact decimal strings.",
        responses=refusals(400),
    )
    async def get_savings(
        since: str | None = None,
        from_: Annotated[str | None, Query(alias="from")] = None,
        to: str | None = None,
    ) -> dict[str, Any]:
        try:
            query = build_query(None, since, from_, to, [], time.time())
        except QueryError as exc:
            raise HTTPException(400, str(exc)) from exc
        return savings_json(await savings(runtime.store, query))

    @api.get(
        "/admin/v1/records",
        dependencies=guard,
        summary="Raw ledger records, newest first, a page at a time",
        response_model=RecordsPage,
        responses=refusals(400),
        description="Pass the `next` token of a page as `cursor` to get the page after it; `next` is null "
        "on the last page. `since` counts back from each call's now: use `from`/`to` for a fixed window.",
    )
    async def get_records(
        since: str | None = None,
        from_: Annotated[str | None, Query(alias="from")] = None,
        to: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        try:
            window = since if since or from_ or to else "1h"
            query = build_query(None, window, from_, to, [], time.time())
            before = None if cursor is None else decode_cursor(cursor)
        except QueryError as exc:
            raise HTTPException(400, str(exc)) from exc
        found = await runtime.store.records(query.start, query.end, limit + 1, before)
        page = found[:limit]
        more = len(found) > limit
        return {
            "records": [record_json(r) for r in page],
            "next": encode_cursor(RecordCursor.of(page[-1])) if more else None,
        }

    @api.get(
        "/admin/v1/keys",
        dependencies=guard,
        summary="API keys (never their secrets)",
        response_model=list[KeyModel],
        responses=refusals(),
    )
    async def get_keys() -> list[dict[str, Any]]:
        return [
            {
                "id": k.identity.key_id,
                "name": k.identity.name,
                "team": k.identity.team,
                "project": k.identity.project,
                "environment": k.identity.environment,
                "tags": dict(k.identity.tags),
                "created_at": iso_time(k.created_at),
                "revoked_at": iso_time(k.revoked_at),
            }
            for k in await runtime.store.list_keys()
        ]

    @api.post(
        "/admin/v1/keys",
        dependencies=guard,
        status_code=201,
        summary="Create a key; shown once",
        response_model=KeyCreated,
        responses=refusals(400),
    )
    async def post_key(body: KeyRequest) -> dict[str, Any]:
        try:
            created = await key_service.create_key(
                runtime.store,
                runtime.config,
                body.team,
                body.project,
                body.environment,
                body.name,
                body.tags,
                body.deployments,
                body.allow_client_tags,
            )
        except key_service.KeyServiceError as exc:
            raise HTTPException(400, str(exc)) from exc
        await runtime.keyring.refresh()
        return {"id": created.stored.identity.key_id, "key": created.key}

    @api.delete(
        "/admin/v1/keys/{key_id}", dependencies=guard, status_code=204, summary="Revoke a key", responses=refusals(404)
    )
    async def delete_key(key_id: str) -> None:
        try:
            await key_service.revoke_key(runtime.store, key_id)
        except key_service.KeyServiceError as exc:
            raise HTTPException(404, str(exc)) from exc
        await runtime.keyring.refresh()

    add_governance_routes(api, runtime, guard)
    add_cache_routes(api, runtime, guard)
    add_dashboard(api, runtime)
    add_focus_routes(api, runtime, guard)
    add_allocation_routes(api, runtime, guard)
    add_scaling_routes(api, runtime)
    return api
