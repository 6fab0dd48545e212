"""`costwarden compute status`: each compute collector as the gateway last saved it (running, last
sample, samples taken, last error), read from the ledger database."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import typer
from rich.table import Table

from costwarden.cli.common import ConfigOption, config_or_exit, console, with_store
from costwarden.domain.collector_status import CollectorStatus
from costwarden.ports import Store
from costwarden.services.reports import iso_time
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
