"""The dashboard's compute panel (/dashboard/api/compute): GPU-hours, provisioned, used and idle cost
per deployment with `compute:`, from the allocation service (the same one as `costwarden allocation`
and `GET /admin/v1/allocation`). Admin sessions only: a deployment's use is every team's.

The allocation reads the window's whole hours from the hourly folds of request intervals (about 720
rows a deployment for 30 days, services/busy_folds.py) and sweeps raw intervals only at its edges.
An answer is reused for `TTL_S`; it names its window, so it stays checkable against the admin API."""

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


TTL_S = 60.0


def compute_api(runtime: Runtime) -> APIRouter:
    api = APIRouter(prefix="/dashboard/api", include_in_schema=False)
    recent: dict[str, tuple[float, dict[str, Any]]] = {}  # since -> (read at, answer); a few windows

    @api.get("/compute")
    async def get_compute(session: Viewer, since: str = "24h") -> dict[str, Any]:
        if session.role is not Role.ADMIN:
            raise HTTPException(403, "compute allocation spans every team's use: shown to admin sessions only")
        now = time.time()
        start, end = window(since, now)
        hit = recent.get(since)
        if hit is not None and now - hit[0] < TTL_S:
            return hit[1]
        samples = runtime.compute.store if runtime.compute is not None else None
        report = await allocation(runtime.config, AllocationQuery(start, end, ("deployment",)), samples)
        body = report_json(report)
        answer = {
            "window": body["window"],
            "deployments": body["deployments"],
            "totals": body["totals"],
            "idle": next((r for r in body["rows"] if r["name"] == "__idle__"), None),
            "pricing": body["pricing"],
            "notes": body["notes"],
        }
        if len(recent) >= 16:  # bounded: the page offers four windows
            recent.clear()
        recent[since] = (now, answer)
        return answer

    return api
