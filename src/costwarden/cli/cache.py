"""`costwarden cache status|purge`: the response cache of the config file's backend.

A `redis` cache is shared, so this command reads and purges it directly. A `memory` cache lives
inside each gateway process: use the admin API (`GET /admin/v1/cache`, `POST /admin/v1/cache/purge`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import orjson
import typer
from rich.table import Table

from costwarden.cli.common import ConfigOption, config_or_exit, console, errors
from costwarden.config.models import Config
from costwarden.ports import ResponseCache, ResponseCacheUnavailable
from costwarden.services.cache import cache_status, purge_cache
from costwarden.storage.factory import open_response_cache

app = typer.Typer(help="The response cache: status and purge.", no_args_is_help=True)
T = TypeVar("T")


def _with_cache(config: Config, action: Callable[[ResponseCache], Awaitable[T]]) -> T:
    if config.cache.backend == "memory":
        errors.print(
            "[red]the memory cache lives inside each gateway process:[/] use the admin API "
            "(GET /admin/v1/cache, POST /admin/v1/cache/purge), or `cache.backend: redis`"
        )
        raise typer.Exit(2)

    async def run() -> T:
        cache = open_response_cache(config.cache, config.state)
        try:
            return await action(cache)
        finally:
            await cache.close()

    try:
        return asyncio.run(run())
    except ResponseCacheUnavailable as exc:
        errors.print(f"[red]the cache's Redis did not answer:[/] {exc}")
        raise typer.Exit(1) from exc


@app.command()
def status(
    output: str = typer.Option("table", "--format", help="table | json"), config: Path | None = ConfigOption
) -> None:
    """Entries in the shared response cache."""
    cfg = config_or_exit(config)
    data = _with_cache(cfg, lambda cache: cache_status(cache, cfg.cache))
    if output == "json":
        typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return
    table = Table("backend", "namespace", "entries", title="response cache")
    table.add_row(str(data["backend"]), str(data["namespace"]), f"{data['entries']:,}")
    console.print(table)


@app.command()
def purge(
    team: str | None = typer.Option(None, "--team", help="Only this team's answers (default: every answer)."),
    config: Path | None = ConfigOption,
) -> None:
    """Drop cached answers: one team's, or all."""
    cfg = config_or_exit(config)
    dropped = _with_cache(cfg, lambda cache: purge_cache(cache, team))
    console.print(f"purged {dropped:,} cached answers" + (f" of team {team!r}" if team else ""))
