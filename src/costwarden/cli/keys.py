"""`costwarden keys create|list|revoke`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.table import Table

from costwarden.cli.common import ConfigOption, config_or_exit, console, errors, parse_pairs, with_store
from costwarden.services import keys as key_service

app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


@app.command()
def create(
    team: str = typer.Option(..., help="Team the key's costs are attributed to."),
    project: str = typer.Option(..., help="Project within the team."),
    env: str = typer.Option(..., "--env", help="Environment, e.g. prod."),
    name: str = typer.Option("", help="A label for people."),
    tag: list[str] = typer.Option([], help="Fixed tag name=value (repeatable)."),
    deployment: list[str] = typer.Option([], help="Restrict the key to these deployments (repeatable)."),
    allow_client_tags: bool = typer.Option(False, help="Let clients add tags with X-Costwarden-Tags."),
    config: Path | None = ConfigOption,
) -> None:
    """Create a key and print it once: only a salted hash is stored."""
    cfg = config_or_exit(config)
    try:
        created = with_store(
            cfg,
            lambda store: key_service.create_key(
                store, cfg, team, project, env, name, parse_pairs("--tag", tag), deployment or None, allow_client_tags
            ),
        )
    except key_service.KeyServiceError as exc:
        errors.print(f"[red]cannot create the key:[/] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"key id [bold]{created.stored.identity.key_id}[/] for {team}/{project}/{env}")
    console.print("This is the only time the key is shown; store it now:", style="yellow")
    typer.echo(created.key)


@app.command("list")
def list_keys(config: Path | None = ConfigOption) -> None:
    """List keys (never their secrets)."""
    cfg = config_or_exit(config)
    keys = with_store(cfg, lambda store: store.list_keys())
    table = Table("id", "name", "team", "project", "env", "tags", "created", "revoked")
    for key in keys:
        ident = key.identity
        table.add_row(
            ident.key_id,
            ident.name,
            ident.team,
            ident.project,
            ident.environment,
            ",".join(f"{k}={v}" for k, v in ident.tags),
            _when(key.created_at),
            _when(key.revoked_at),
        )
    for entry in cfg.keys:
        table.add_row(entry.id, entry.name, entry.team, entry.project, entry.environment, "(in config)", "", "")
    console.print(table)


@app.command()
def revoke(
    key_id: str = typer.Argument(..., help="The key id shown by `keys list`."), config: Path | None = ConfigOption
) -> None:
    """Revoke a key: gateways refuse it within `storage.key_refresh_seconds`."""
    cfg = config_or_exit(config)
    try:
        with_store(cfg, lambda store: key_service.revoke_key(store, key_id))
    except key_service.KeyServiceError as exc:
        errors.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    console.print(f"revoked key {key_id}")


def _when(at: float | None) -> str:
    return "" if at is None else datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
