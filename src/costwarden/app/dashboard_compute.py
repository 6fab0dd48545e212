"""The dashboard's compute panel (/dashboard/api/compute): GPU-hours, provisioned, used and idle cost
per deployment with `compute:`, from the allocation service (the same one as `costwarden allocation`
and `GET /admin/v1/allocation`). Admin sessions only: a deployment's use is every team's."""

from __future__ import annotations

import math
import time
from typing import Any

from fastapi import APIRouter, HTTPException

from costwarden.app.dashboard_api import Viewer
from costwarden.app.dashboard_session import Role
from costwarden.app.runtime import Runtime
from costwarden.domain.report import QueryError
from costwarden.services.allocation import AllocationQuery, allocation, report_json
from costwarden.services.reports import parse_duration


def window(since: str, now: float) -> tuple[float, float]:
    """[start, end) of the last `since`, ending on the whole second before now: its ISO bounds
    (milliseconds) name it exactly, so the admin API gives the same figures for them."""
    try:
        length = parse_duration(since)
    except QueryError as exc:
        raise HTTPException(400, str(exc)) from exc
    end = float(math.floor(now))
    start = max(0.0, end - length)
    if not start < end:
        raise HTTPException(400, f"the window {since!r} is empty")
    return start, end


def compute_api(runtime: Runtime) -> APIRouter:
    api = APIRouter(prefix="/dashboard/api", include_in_schema=False)

    @api.get("/compute")
    async def get_compute(session: Viewer, since: str = "24h") -> dict[str, Any]:
        if session.role is not Role.ADMIN:
            raise HTTPException(403, "compute allocation spans every team's use: shown to admin sessions only")
        start, end = window(since, time.time())
        samples = runtime.compute.store if runtime.compute is not None else None
        report = await allocation(runtime.config, AllocationQuery(start, end, ("deployment",)), samples)
        body = report_json(report)
        return {
            "window": body["window"],
            "deployments": body["deployments"],
            "totals": body["totals"],
            "idle": next((r for r in body["rows"] if r["name"] == "__idle__"), None),
            "pricing": body["pricing"],
            "notes": body["notes"],
        }

    return api
