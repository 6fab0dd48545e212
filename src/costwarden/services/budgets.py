"""Budgets: the config file's, plus those defined at run time (admin API, CLI) in the database."""

from __future__ import annotations

import logging
import time

import orjson
from pydantic import ValidationError

from costwarden.config.governance import BudgetConfig
from costwarden.config.models import Config
from costwarden.domain.budget import Budget
from costwarden.ports import BudgetStore

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
    return [b.budget(config.governance.timezone) for b in await stored_budgets(store, config)]


def _check(config: Config, budget: BudgetConfig) -> None:
    if budget.id in {b.id for b in config.governance.budgets}:
        raise BudgetServiceError(f"budget {budget.id!r} is defined in the config file; change it there")
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
