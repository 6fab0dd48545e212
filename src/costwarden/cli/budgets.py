"""`costwarden budgets list|set|delete` and `costwarden alerts`."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.table import Table

from costwarden.alerts.payload import alert_json
from costwarden.chain.admit import StoreHealth
from costwarden.chain.policy import AdmissionPolicy
from costwarden.cli.common import ConfigOption, config_or_exit, console, errors, parse_pairs, with_store
from costwarden.config.governance import BudgetConfig
from costwarden.config.models import Config
from costwarden.domain.budget import Action, Budget
from costwarden.domain.money import format_usd
from costwarden.ports import CounterStoreUnavailable, CounterStoreUnseeded, Store
from costwarden.services import budgets as budget_service
from costwarden.services.budgets import BudgetView
from costwarden.services.governor import Governor
from costwarden.storage.factory import open_counters, open_lease

app = typer.Typer(help="List, set and delete budgets.", no_args_is_help=True)


@contextlib.asynccontextmanager
async def _governor(store: Store, config: Config, budgets: list[Budget]) -> AsyncIterator[Governor]:
    """A governor of `budgets` on the configured counter store, for one command."""
    policy = AdmissionPolicy(budgets, (), (), config.governance.reservation_ttl_seconds, {})
    counters = open_counters(config.state)
    lease = open_lease(config.state, 15.0)
    try:
        yield Governor(policy, counters, store, StoreHealth(), _NoAlerts(), lease, 1.0, None)
    finally:
        await counters.close()
        await lease.close()


async def _views(store: Store, config: Config) -> list[BudgetView]:
    """Live state from the shared counter store; with in-process state, spend is read from the ledger."""
    budgets = await budget_service.active_budgets(store, config)
    async with _governor(store, config, budgets) as governor:
        now = time.time()
        if config.state is None:
            await governor.rebuild(now)  # no gateway's memory to read: the ledger is the truth
        return [await governor.view(b, now) for b in budgets]


async def _announced(store: Store, config: Config, changed: list[Budget]) -> bool:
    """Tell the gateways that share the counter store: seed `changed` from the ledger and move the
    budget definitions' generation on, so each reloads them before its next admission. False when
    the store is in-process or unreachable (gateways then load them at their next tick)."""
    if config.state is None:
        return False
    async with _governor(store, config, changed) as governor:
        try:
            await governor.seed(changed, time.time(), announce=True)
        except CounterStoreUnavailable:
            return False
    return True


async def _set(store: Store, config: Config, budget: BudgetConfig) -> bool:
    await budget_service.set_budget(store, config, budget)
    return await _announced(store, config, [config.budget_of(budget)])


async def _delete(store: Store, config: Config, budget_id: str) -> bool:
    await budget_service.delete_budget(store, config, budget_id)
    return await _announced(store, config, [])


def _later(announced: bool) -> None:
    if not announced:
        console.print("[yellow]running gateways apply it within governance.evaluate_every_seconds[/]")


class _NoAlerts:
    def submit(self, alerts: object) -> None:
        return None

    def record(self, alerts: object) -> None:
        return None

    def adopt(self, active: object) -> None:
        return None

    def disown(self) -> None:
        return None


@app.command("list")
def list_budgets(config: Path = ConfigOption) -> None:
    """Budgets with spent, reserved, remaining, utilisation and forecast for the current window."""
    cfg = config_or_exit(config)
    try:
        views = with_store(cfg, lambda store: _views(store, cfg))
    except CounterStoreUnseeded as exc:
        errors.print(f"[yellow]the budget counters are being rebuilt from the ledger ({exc}); retry in a moment[/]")
        raise typer.Exit(1) from exc
    if not views:
        console.print("no budgets: add them under governance.budgets in the config, or `costwarden budgets set`")
        return
    table = Table("id", "scope", "window", "action", "limit", "spent", "reserved", "remaining", "used", "forecast")
    for col in table.columns[4:]:
        col.justify = "right"
    for view in views:
        b = view.budget
        pct = view.utilisation * 100
        colour = "red" if pct >= 100 else "yellow" if pct >= 80 else "green"
        table.add_row(
            b.id,
            str(b.scope),
            b.window.describe(),
            b.action.value,
            format_usd(b.limit_usd, 2),
            format_usd(view.state.spent.usd, 4),
            format_usd(view.state.reserved.usd, 4),
            format_usd(view.remaining_usd, 4),
            f"[{colour}]{pct:.1f}%[/]",
            _forecast(view),
        )
    console.print(table)
    if cfg.state is None:
        console.print("[dim]in-process state: spent is read from the ledger; holds in flight live in the gateway[/]")


def _forecast(view: BudgetView) -> str:
    forecast = view.forecast
    if forecast is None:
        return "-"
    return format_usd(forecast.projected_spend, 4) + (" [red]over[/]" if forecast.will_exceed else "")


@app.command("set")
def set_budget(
    budget_id: str = typer.Argument(..., help="The budget's id."),
    limit_usd: Decimal = typer.Option(..., "--limit-usd", help="Limit per window, in USD."),
    scope: list[str] = typer.Option([], "--scope", help="name=value (repeatable): team, project, env, deployment, key"),
    window: str = typer.Option("month", help="hour | day | week | month | rolling"),
    rolling_seconds: int | None = typer.Option(None, help="The length of a rolling window."),
    limit_tokens: int | None = typer.Option(None, help="Also limit tokens per window."),
    limit_requests: int | None = typer.Option(None, help="Also limit requests per window."),
    action: Action = typer.Option(Action.BLOCK, help="What happens at 100 %."),
    thresholds: str = typer.Option("50,80,100", help="Alert thresholds in percent."),
    config: Path = ConfigOption,
) -> None:
    """Create or replace a stored budget (gateways sharing a Redis state apply it to their next request)."""
    cfg = config_or_exit(config)
    try:
        budget = BudgetConfig(
            id=budget_id,
            scope=parse_pairs("--scope", scope, {"env": "environment", "key": "key_id"}),
            window=window,
            rolling_seconds=rolling_seconds,
            limit_usd=limit_usd,
            limit_tokens=limit_tokens,
            limit_requests=limit_requests,
            action=action,
            thresholds=tuple(int(t) for t in thresholds.split(",") if t.strip()),
        )
        announced = with_store(cfg, lambda store: _set(store, cfg, budget))
    except (ValidationError, ValueError) as exc:
        errors.print(f"[red]cannot set budget {budget_id!r}:[/] {option_message(exc)}")
        raise typer.Exit(2) from exc
    console.print(f"budget [bold]{budget_id}[/] set: {format_usd(limit_usd, 2)} per {window}, {action.value}")
    _later(announced)


# Config field -> the `budgets set` option that sets it, and scope names as the option spells them.
_OPTIONS = {
    "id": "BUDGET_ID",
    "scope": "--scope",
    "window": "--window",
    "rolling_seconds": "--rolling-seconds",
    "limit_usd": "--limit-usd",
    "limit_tokens": "--limit-tokens",
    "limit_requests": "--limit-requests",
    "thresholds": "--thresholds",
    "action": "--action",
}
_SCOPE_NAMES = {"key_id": "key", "environment": "env"}


def option_message(exc: ValidationError | ValueError) -> str:
    """A validation error in the words of the command line: options, not config fields."""
    if not isinstance(exc, ValidationError):
        return _in_option_words(str(exc))
    parts = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        message = _in_option_words(str(error["msg"]).removeprefix("Value error, "))
        parts.append(f"{_OPTIONS[field]}: {message}" if field in _OPTIONS else message)
    return "; ".join(parts)


def _in_option_words(message: str) -> str:
    message = message.replace(
        "`rolling_seconds` is required for window: rolling", "--rolling-seconds is required for --window rolling"
    )
    for name, alias in _SCOPE_NAMES.items():
        message = message.replace(name, f"{alias} ({name})")
    return message


@app.command("delete")
def delete_budget(budget_id: str = typer.Argument(..., help="The budget's id."), config: Path = ConfigOption) -> None:
    """Delete a stored budget."""
    cfg = config_or_exit(config)
    try:
        announced = with_store(cfg, lambda store: _delete(store, cfg, budget_id))
    except budget_service.BudgetServiceError as exc:
        errors.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    console.print(f"deleted budget {budget_id}")
    _later(announced)


def alerts(
    active: bool = typer.Option(False, "--active", help="Only alerts still firing."),
    limit: int = typer.Option(50, help="How many, newest first."),
    config: Path = ConfigOption,
) -> None:
    """Alert records: budget thresholds, exhaustion, forecasts, spikes, store outages."""
    cfg = config_or_exit(config)
    found = with_store(cfg, lambda store: store.list_alerts(active, limit))
    if not found:
        console.print("no active alerts" if active else "no alerts yet")
        return
    table = Table("started", "kind", "severity", "scope", "observed", "threshold", "resolved", "summary")
    for alert in found:
        data = alert_json(alert)
        labels = ",".join(f"{k}={v}" for k, v in alert.labels)
        table.add_row(
            _when(alert.started_at),
            alert.kind.value,
            alert.severity.value,
            labels,
            str(data["observed"]),
            str(data["threshold"]),
            _when(alert.resolved_at) or "[red]firing[/]",
            alert.summary,
        )
    console.print(table)


def _when(at: float | None) -> str:
    return "" if at is None else datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
