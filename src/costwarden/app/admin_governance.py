"""Admin API routes of governance: budgets (with live state) and alert records."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.params import Depends
from pydantic import ValidationError

from costwarden.alerts.payload import alert_json
from costwarden.app.admin_models import AlertModel, BudgetModel, refusals
from costwarden.app.admin_refusals import counters_answer
from costwarden.app.runtime import Runtime
from costwarden.config.governance import BudgetConfig
from costwarden.ports import CounterStoreUnavailable, CounterStoreUnseeded
from costwarden.services import budgets as budget_service
from costwarden.services.budgets import budget_json


def add_governance_routes(api: FastAPI, runtime: Runtime, guard: list[Depends]) -> None:
    @api.get(
        "/admin/v1/budgets",
        dependencies=guard,
        summary="Budgets with spent, reserved, remaining, forecast",
        response_model=list[BudgetModel],
        responses=refusals(503),
    )
    async def get_budgets() -> list[dict[str, Any]]:
        now = time.time()
        with counters_answer():
            return [budget_json(await runtime.governor.view(b, now)) for b in runtime.policy.budgets]

    @api.put(
        "/admin/v1/budgets/{budget_id}",
        dependencies=guard,
        summary="Create or replace a stored budget",
        response_model=BudgetModel,
        responses=refusals(400, 503),
    )
    async def put_budget(budget_id: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            budget = BudgetConfig.model_validate({**body, "id": budget_id})
            await budget_service.set_budget(runtime.store, runtime.config, budget)
        except ValidationError as exc:
            raise HTTPException(422, exc.errors(include_url=False, include_context=False)) from exc
        except budget_service.BudgetServiceError as exc:
            raise HTTPException(400, str(exc)) from exc
        await runtime.governor.refresh_budgets(announce=True)  # seeded before it admits, on every replica at once
        active = next(b for b in runtime.policy.budgets if b.id == budget_id)
        try:
            return budget_json(await runtime.governor.view(active, time.time()))
        except (CounterStoreUnavailable, CounterStoreUnseeded) as exc:
            raise HTTPException(503, f"budget {budget_id!r} is stored; its state cannot be read yet: {exc}") from exc

    @api.delete(
        "/admin/v1/budgets/{budget_id}",
        dependencies=guard,
        status_code=204,
        summary="Delete a stored budget",
        responses=refusals(404),
    )
    async def delete_budget(budget_id: str) -> None:
        try:
            await budget_service.delete_budget(runtime.store, runtime.config, budget_id)
        except budget_service.BudgetServiceError as exc:
            raise HTTPException(404, str(exc)) from exc
        await runtime.governor.refresh_budgets(announce=True)

    @api.get(
        "/admin/v1/alerts",
        dependencies=guard,
        summary="Alert records, newest first",
        response_model=list[AlertModel],
        responses=refusals(),
    )
    async def get_alerts(
        active: bool = False, limit: Annotated[int, Query(ge=1, le=10_000)] = 200
    ) -> list[dict[str, Any]]:
        return [alert_json(a) for a in await runtime.store.list_alerts(active, limit)]
