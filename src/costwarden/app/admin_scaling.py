"""`GET /scaling/v1/{deployment}`: the replicas a deployment should run, demand capped by budget,
for KEDA's `metrics-api` scaler (`valueLocation: replicas`, `targetValue: 1`). Readable with the
admin token or the read-only `server.scaling_token` (a KEDA TriggerAuthentication, `authMode: bearer`)."""

from __future__ import annotations

import secrets
import time
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from costwarden.app.admin_models import USD, refusals
from costwarden.app.admin_refusals import counters_answer
from costwarden.app.runtime import Runtime
from costwarden.domain.budget import Budget
from costwarden.services.budgets import BudgetView
from costwarden.services.scaling import ScalingUnknown, scaled_json

Credentials = Annotated[
    HTTPAuthorizationCredentials | None,
    Depends(HTTPBearer(auto_error=False, description="server.scaling_token or the admin token")),
]


class ScaleModel(BaseModel):
    """The replicas to run (`replicas`, what KEDA reads) and why: demand, bounds, the budget cap."""

    model_config = ConfigDict(extra="allow")
    deployment: str
    replicas: int = Field(ge=0, description="max(min_replicas, min(demand, budget_cap, max_replicas))")
    demand: int = Field(ge=0, description="replicas the in-flight requests and throughput call for")
    wanted: int = Field(ge=0, description="demand within [min_replicas, max_replicas]")
    budget_cap: int | None = Field(description="replicas the tightest budget can pay for until its window ends")
    capped: bool = Field(description="the budget cap holds `replicas` below `wanted`")
    budget: str | None
    remaining_usd: str | None = Field(pattern=r"^-?\d+\.\d{9}$", description="of the capping budget, exact")
    hours_left: float | None
    replica_hourly_usd: str = USD
    in_flight: int
    rps: float
    min_replicas: int
    max_replicas: int
    reason: str


def add_scaling_routes(api: FastAPI, runtime: Runtime) -> None:
    tokens = [t for t in (runtime.config.server.admin_token, runtime.config.server.scaling_token) if t]

    async def reader(credentials: Credentials) -> None:  # async: FastAPI would run a def in a thread pool
        if not tokens:
            raise HTTPException(403, "the scaling API is disabled: set server.scaling_token or server.admin_token")
        value = ("" if credentials is None else credentials.credentials.strip()).encode()
        # Compare with every token (no early exit), so the time taken does not say which one nearly matched.
        matched = [secrets.compare_digest(value, token.encode()) for token in tokens]
        if not any(matched):
            raise HTTPException(401, "send the scaling or admin token as `Authorization: Bearer <token>`")

    @api.get(
        "/scaling/v1/{deployment}",
        dependencies=[Depends(reader)],
        summary="Replicas for a deployment: demand capped by what its budget can pay for (KEDA metrics-api)",
        response_model=ScaleModel,
        responses=refusals(404, 503),
        description="demand = max(ceil(in_flight / target_in_flight_per_replica), ceil(rps / "
        "target_rps_per_replica)); budget_cap = floor(remaining_usd / (replica hourly price x hours left in "
        "the budget window)), the tightest budget paying for the deployment; replicas = max(min_replicas, "
        "min(demand, budget_cap, max_replicas)). 404: no such deployment, or it has no `compute.scaling`.",
    )
    async def get_scale(deployment: str) -> dict[str, Any]:
        now = time.time()

        async def view(budget: Budget) -> BudgetView:
            return await runtime.governor.view(budget, now)

        try:
            with counters_answer():
                scaled = await runtime.scaling.scale(deployment, runtime.policy.budgets, view, now)
        except ScalingUnknown as exc:
            raise HTTPException(404, str(exc)) from exc
        return scaled_json(scaled)
