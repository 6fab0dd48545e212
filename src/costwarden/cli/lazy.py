"""Subcommands imported when they are called, not when `costwarden` starts.

`costwarden serve` (every gateway start) and each other command import only their own module: the
bench, allocation and report modules pull in aiohttp, the allocation engine and the report stores,
which a gateway start does not need (about a third of its import time). `costwarden --help` lists
every command, so it imports them all."""

from __future__ import annotations

import functools
import importlib
from typing import Any

import typer
from typer.core import TyperGroup

# name -> (module, attribute): the attribute is a Typer app (a group of commands) or a command function.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "keys": ("costwarden.cli.keys", "app"),
    "budgets": ("costwarden.cli.budgets", "app"),
    "alerts": ("costwarden.cli.budgets", "alerts"),
    "ledger": ("costwarden.cli.ledger", "app"),
    "export": ("costwarden.cli.export", "app"),
    "queue": ("costwarden.cli.queue", "app"),
    "cache": ("costwarden.cli.cache", "app"),
    "report": ("costwarden.cli.report", "report"),
    "bench": ("costwarden.cli.bench", "bench"),
    "check": ("costwarden.cli.check", "check"),
    "hardware": ("costwarden.cli.hardware", "app"),
    "allocation": ("costwarden.cli.allocation", "allocation_command"),
    "compute": ("costwarden.cli.compute", "app"),
}


@functools.cache
def load(name: str) -> Any:
    """The click command for subcommand `name`, its module imported now."""
    module, attribute = SUBCOMMANDS[name]
    found = getattr(importlib.import_module(module), attribute)
    if isinstance(found, typer.Typer):
        group = typer.main.get_command(found)
        group.name = name
        return group
    single = typer.Typer()
    single.command(name)(found)
    return typer.main.get_command(single)  # an app of one command is that command


class LazyGroup(TyperGroup):
    """The top-level `costwarden` group: its own commands (serve, config) plus SUBCOMMANDS, loaded on use."""

    def list_commands(self, ctx: Any) -> list[str]:
        return sorted({*super().list_commands(ctx), *SUBCOMMANDS})

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in SUBCOMMANDS:
            return load(cmd_name)
        return super().get_command(ctx, cmd_name)
