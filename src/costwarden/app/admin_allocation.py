"""`GET /admin/v1/allocation`: replica cost split by busy time, OpenCost-like (window, rows with hours,
costs and efficiency, an `__idle__` row, totals)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.params import Depends

from costwarden.app.admin_models import refusals
from costwarden.app.runtime import Runtime
from costwarden.domain.report import QueryError
from costwarden.services.allocation import allocation, build_allocation_query, report_json


def add_allocation_routes(api: FastAPI, runtime: Runtime, guard: list[Depends]) -> None:
    @api.get(
        "/admin/v1/allocation",
        dependencies=guard,
        summary="Replica cost by team (or other dimensions) by busy time, with idle",
        responses=refusals(400),
        description="Provisioned cost = replicas x hardware price x time for each deployment with `compute:`; "
        "each group gets the cost of its busy time (request intervals, overlaps shared equally), idle is "
        "`__idle__` (`idle=separate`) or shared (`share-weighted`, `share-even`) or left out (`hide`). "
        "Rows sum to `totals.provisionedCost` exactly (with `hide`: to `usedCost`). Money as decimal strings.",
    )
    async def get_allocation(
        aggregate: str = "team",
        since: str | None = None,
        from_: Annotated[str | None, Query(alias="from")] = None,
        to: str | None = None,
        idle: str = "separate",
    ) -> dict[str, Any]:
        try:
            query = build_allocation_query(aggregate, since, from_, to, idle, time.time())
        except QueryError as exc:
            raise HTTPException(400, str(exc)) from exc
        samples = runtime.compute.store if runtime.compute is not None else None
        return report_json(await allocation(runtime.config, query, samples))
