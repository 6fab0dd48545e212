"""`costwarden queue status|purge|prune`: the durable batch queue's depth and age, purging its
pending jobs, and pruning what its retention lets go (finished batches, their jobs and files)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import orjson
import typer
from rich.table import Table

from costwarden.cli.common import ConfigOption, config_or_exit, console, errors, plural
from costwarden.config import Config
from costwarden.ports import BatchBackend
from costwarden.services.batch_queue import purge_queue, queue_status
from costwarden.services.retention import cutoff, prune_queue
from costwarden.storage.factory import open_queue

T = TypeVar("T")
app = typer.Typer(help="The durable batch queue (OpenAI Batch API).", no_args_is_help=True)


def with_queue(config: Config, action: Callable[[BatchBackend], Awaitable[T]]) -> T:
    async def run() -> T:
        queue = open_queue(config.batch.queue or config.storage.ledger)
        await queue.open()
        try:
            return await action(queue)
        finally:
            await queue.close()

    return asyncio.run(run())


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


@app.command()
def status(
    config: Path | None = ConfigOption,
    output: str = typer.Option("table", "--format", help="table | json"),
) -> None:
    """Depth (jobs waiting), jobs running, and the oldest job's age, per unfinished batch."""
    if output not in ("table", "json"):
        errors.print("[red]--format[/] must be table or json")
        raise typer.Exit(2)
    cfg = config_or_exit(config)
    found = with_queue(cfg, lambda q: queue_status(q, time.time()))
    if output == "json":
        console.print_json(orjson.dumps(found.to_json()).decode())
        return
    oldest = _age(found.oldest_age_s)
    table = Table(title=f"batch queue: {found.depth} waiting, {found.running} running, oldest {oldest}")
    for column in ("batch", "team", "status", "pending", "running", "done", "oldest"):
        table.add_column(column, justify="right" if column in ("pending", "running", "done", "oldest") else "left")
    for b in found.batches:
        age = None if b.oldest_enqueued_at is None else found.now - b.oldest_enqueued_at
        table.add_row(b.batch_id, b.team, b.status.value, str(b.pending), str(b.leased), str(b.done), _age(age))
    console.print(table)


@app.command()
def purge(
    batch: str | None = typer.Option(None, "--batch", help="Only this batch's jobs [default: every batch]."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    config: Path | None = ConfigOption,
) -> None:
    """Drop pending jobs: they never run and are reported in their batch's error file as purged."""
    cfg = config_or_exit(config)
    if not yes and not typer.confirm(f"purge the pending jobs of {batch or 'every batch'}?"):
        raise typer.Exit(1)
    purged = with_queue(cfg, lambda q: purge_queue(q, batch, time.time()))
    console.print(f"purged {plural(purged, 'pending job')}")


@app.command()
def prune(
    older_than_days: float | None = typer.Option(
        None, "--older-than-days", min=1, help="Prune what finished earlier [default: batch.retention_days]."
    ),
    config: Path | None = ConfigOption,
) -> None:
    """Delete batches finished more than the retention ago, with their jobs, output and error files,
    and older uploads no kept batch was created from; in short transactions. The ledger is kept."""
    cfg = config_or_exit(config)
    days = older_than_days if older_than_days is not None else cfg.batch.retention_days
    if days is None:
        errors.print("[red]retention is off:[/] set batch.retention_days or pass --older-than-days")
        raise typer.Exit(2)
    before, size = cutoff(time.time(), days), cfg.batch.retention_batch
    pruned = with_queue(cfg, lambda q: prune_queue(q, before, size))
    when = datetime.fromtimestamp(before, UTC).isoformat(timespec="seconds")
    batches = f"{pruned.batches} {'batch' if pruned.batches == 1 else 'batches'}"
    jobs, files = plural(pruned.jobs, "job"), plural(pruned.files, "file")
    console.print(f"pruned {batches} finished before {when} ({jobs}) and {files}; the ledger is kept")
