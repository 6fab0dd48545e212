"""`costwarden compute status`: each compute collector as the gateway last saved it (running, last
sample, samples taken, last error), read from the ledger database. `costwarden compute refold`:
fold the request intervals of closed hours again (docs/compute.md, "Long windows")."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from costwarden.cli.common import ConfigOption, config_or_exit, console, errors, with_store
from costwarden.domain.busy_fold import HOUR
from costwarden.domain.collector_status import CollectorStatus
from costwarden.domain.report import QueryError
from costwarden.ports import Store
from costwarden.services.busy_folds import BusyFolder
from costwarden.services.reports import iso_time, parse_duration, parse_time
from costwarden.storage.factory import open_samples

app = typer.Typer(help="Compute collectors: what measures the replicas (docs/compute.md).", no_args_is_help=True)


@app.command("status")
def status(
    output: str = typer.Option("table", "--format", help="table | json"),
    config: Path | None = ConfigOption,
) -> None:
    """Each configured collector: running, last sample, samples taken, last error."""
    cfg = config_or_exit(config)

    async def read(store: Store) -> list[CollectorStatus]:
        samples = open_samples(cfg.storage.ledger)
        try:
            return await samples.statuses()
        finally:
            await samples.close()

    saved = with_store(cfg, read)
    if output == "json":
        typer.echo(orjson.dumps([s.to_json_dict() for s in saved], option=orjson.OPT_INDENT_2).decode())
        return
    if not cfg.compute.collectors:
        console.print("no collectors configured: add `compute: {collectors: [...]}` (docs/compute.md)")
    table = Table("collector", "running", "last sample", "samples", "last error", title="compute collectors")
    now = time.time()
    for s in saved:
        at = s.last_sample_at
        last = "-" if at is None else f"{iso_time(at)} ({now - at:,.0f} s ago)"
        table.add_row(s.name, "yes" if s.running else "[red]no[/]", last, f"{s.samples:,}", s.last_error or "-")
    console.print(table)


@app.command("refold")
def refold(
    since: str = typer.Option(..., help="First hour to fold again: ISO 8601 (UTC unless an offset) or 7d, 24h."),
    config: Path | None = ConfigOption,
) -> None:
    """Fold the request intervals of every closed hour since --since again, from the ledger (the gateway
    refolds the hours a late record reaches by itself; this is for a ledger edited by hand)."""
    cfg = config_or_exit(config)
    now = time.time()
    try:
        start = _since(since, now)
    except QueryError as exc:
        errors.print(f"[red]{exc}[/]", soft_wrap=True)
        raise typer.Exit(2) from exc
    folder = BusyFolder(cfg, _always)
    if folder.folds is None or not folder.deployments:
        errors.print("nothing to fold: no deployment has `compute:`, or the ledger is not SQLite or PostgreSQL")
        raise typer.Exit(2)
    hours = max(0, (folder.closed(now) - int(start // HOUR) * HOUR) // HOUR)

    async def run(store: Store) -> int:  # the store is opened for its migrations
        columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} h"))
        with Progress(*columns, TimeElapsedColumn(), console=errors, transient=True) as progress:
            task = progress.add_task("refolding", total=hours)
            return await folder.refold(start, now, lambda done: progress.advance(task, done))

    rows = with_store(cfg, run)
    deployments = len(folder.deployments)
    console.print(f"refolded {hours:,} hours of {deployments} deployments since {iso_time(start)}: {rows:,} rows")


def _since(since: str, now: float) -> float:
    try:
        return now - parse_duration(since)
    except QueryError:
        try:
            return parse_time(since)
        except QueryError:
            hint = "use ISO 8601 (2026-11-01) or a duration (24h, 7d)"
            raise QueryError(f"cannot read --since {since!r}: {hint}") from None


async def _always(now: float) -> bool:
    return True
