"""Budgets: the config file's, plus those defined at run time (admin API, CLI) in the database, and
a budget's status (one computation for the admin API, the CLI, the metrics and any page)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from decimal import Decimal

import orjson
from pydantic import ValidationError

from costwarden.config.governance import BudgetConfig
from costwarden.config.models import Config
from costwarden.domain.admission import BudgetCheck
from costwarden.domain.budget import Amount, Budget, BudgetState, remaining_usd, utilisation
from costwarden.domain.forecast import Forecast, forecast
from costwarden.domain.money import usd_text
from costwarden.ports import BudgetStore, CounterStore

log = logging.getLogger(__name__)


class BudgetServiceError(ValueError):
    """A budget that cannot be set or deleted; the message says why."""


async def stored_budgets(store: BudgetStore, config: Config) -> list[BudgetConfig]:
    """Config budgets first, then stored ones (a stored budget may not shadow a config budget)."""
    declared = {b.id for b in config.governance.budgets}
    found = list(config.governance.budgets)
    for budget_id, definition in await store.list_budgets():
        if budget_id in declared:
            log.warning("stored budget %r is ignored: the config file defines a budget with that id", budget_id)
            continue
        try:
            found.append(BudgetConfig.model_validate(orjson.loads(definition)))
        except (ValidationError, orjson.JSONDecodeError) as exc:
            log.error("stored budget %r is invalid and ignored: %s", budget_id, exc)
    return found


async def active_budgets(store: BudgetStore, config: Config) -> list[Budget]:
    return [config.budget_of(b) for b in await stored_budgets(store, config)]


def _check(config: Config, budget: BudgetConfig) -> None:
    if budget.id in {b.id for b in config.governance.budgets}:
        raise BudgetServiceError(f"budget {budget.id!r} is defined in the config file; change it there")
    if budget.degrade_rule() is not None:  # else it would be stored and silently act as alert_only
        raise BudgetServiceError(
            f"budget {budget.id!r}: action degrade is declared in the config file, beside the deployments' "
            "variants (docs/actions.md); a budget set at run time may block or alert_only"
        )
    patched = config.model_copy(update={"governance": config.governance.model_copy(update={"budgets": (budget,)})})
    problems = patched.reference_problems()
    if problems:
        raise BudgetServiceError("; ".join(message for _, message in problems))
    try:
        budget.budget(config.governance.timezone)
    except ValueError as exc:
        raise BudgetServiceError(str(exc)) from exc


async def set_budget(store: BudgetStore, config: Config, budget: BudgetConfig) -> None:
    _check(config, budget)
    await store.put_budget(budget.id, budget.model_dump_json(), time.time())


async def delete_budget(store: BudgetStore, config: Config, budget_id: str) -> None:
    if budget_id in {b.id for b in config.governance.budgets}:
        raise BudgetServiceError(f"budget {budget_id!r} is defined in the config file; remove it there")
    if not await store.delete_budget(budget_id):
        raise BudgetServiceError(f"no stored budget {budget_id!r} (see `costwarden budgets list`)")


@dataclass(frozen=True, slots=True)
class BudgetView:
    """A budget's current window, as the admin API and `costwarden budgets list` show it."""

    budget: Budget
    window_start: float
    window_end: float
    state: BudgetState
    remaining_usd: Decimal
    utilisation: Decimal
    forecast: Forecast | None
    compute_usd: Decimal = Decimal(0)  # of `state.spent`: replica cost (include_compute), the rest is requests


async def budget_view(counters: CounterStore, check: BudgetCheck, budget: Budget, now: float) -> BudgetView:
    """The budget's status at `now` from the counter store (raises CounterStoreUnavailable, or
    CounterStoreUnseeded while its counters are being rebuilt)."""
    state = await counters.budget_state(check, now)
    compute = budget.compute_usd(now)  # include_compute: replica cost accrued in the window, counted as spent
    if compute:
        state = BudgetState(state.spent + Amount(compute), state.reserved)
    start, end = budget.window.bounds(now)
    projection = forecast(state.spent.usd, budget.limit_usd, start, end, now) if end > now else None
    return BudgetView(
        budget, start, end, state, remaining_usd(budget, state), utilisation(budget, state), projection, compute
    )


def budget_json(view: BudgetView) -> dict[str, object]:
    """A budget as the admin API and the CLI show it; money as strings."""
    budget, state, projection = view.budget, view.state, view.forecast
    return {
        "id": budget.id,
        "scope": dict(budget.scope.dimensions),
        "window": budget.window.describe(),
        "window_start": view.window_start,
        "window_end": view.window_end,
        "action": budget.action.value,
        "fail_mode": budget.fail_mode.value,
        "limit_usd": usd_text(budget.limit_usd),
        "limit_tokens": budget.limit_tokens,
        "limit_requests": budget.limit_requests,
        "spent_usd": usd_text(state.spent.usd),
        "compute_usd": usd_text(view.compute_usd),
        "compute_usd_per_hour": usd_text(budget.compute_usd_per_hour),
        "reserved_usd": usd_text(state.reserved.usd),
        "remaining_usd": usd_text(view.remaining_usd),
        "utilisation": str(view.utilisation.quantize(Decimal("0.0001"))),
        "spent_tokens": state.spent.tokens,
        "spent_requests": state.spent.requests,
        "forecast_usd": None if projection is None else usd_text(projection.projected_spend),
        "forecast_exceeds_at": None
        if projection is None or not projection.will_exceed
        else projection.expected_exceed_at,
    }
