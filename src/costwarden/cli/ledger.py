"""`costwarden ledger prune`: delete raw ledger records past the retention (storage.retention);
`costwarden ledger partition`: partition a PostgreSQL ledger by month (storage/partitions.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import typer

from costwarden.cli.common import ConfigOption, config_or_exit, console, errors, plural, with_store
from costwarden.ports import Store
from costwarden.services.retention import cutoff, prune_ledger

app = typer.Typer(help="Maintain the ledger.", no_args_is_help=True)


@app.command()
def prune(
    older_than_days: float | None = typer.Option(
        None, "--older-than-days", min=1, help="Prune older raw records [default: storage.retention.raw_days]."
    ),
    config: Path | None = ConfigOption,
) -> None:
    """Delete raw records older than the retention, in batches; rollups (reports, budgets) are kept."""
    cfg = config_or_exit(config)
    days = older_than_days if older_than_days is not None else cfg.storage.retention.raw_days
    if days is None:
        errors.print("[red]retention is off:[/] set storage.retention.raw_days or pass --older-than-days")
        raise typer.Exit(2)
    before = cutoff(time.time(), days)
    batch = cfg.storage.retention.batch
    pruned = with_store(cfg, lambda store: prune_ledger(store, before, batch))
    when = datetime.fromtimestamp(before, UTC).isoformat(timespec="seconds")
    console.print(f"pruned {plural(pruned, 'raw record')} started before {when}; rollups kept")


@app.command()
def partition(config: Path | None = ConfigOption) -> None:
    """Partition a PostgreSQL ledger by month (new or existing); retention then drops whole months.

    The records are copied under an exclusive lock in one transaction: gateways keep serving, their
    records wait in their spools until it commits. Run it once; running it again changes nothing."""
    cfg = config_or_exit(config)
    if not cfg.storage.ledger.startswith(("postgresql://", "postgres://")):
        errors.print("[red]only a PostgreSQL ledger can be partitioned[/] (storage.ledger is not postgresql://)")
        raise typer.Exit(2)

    async def convert(store: Store) -> int:
        return await store.partition()  # type: ignore[attr-defined,no-any-return]  # PostgresStore only

    moved = with_store(cfg, convert)
    if moved < 0:
        console.print("the ledger is partitioned by month already")
    else:
        console.print(f"partitioned the ledger by month: {plural(moved, 'record')} moved")
