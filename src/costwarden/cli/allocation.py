"""`costwarden allocation`: the provisioned cost of self-hosted replicas split by team (or project,
environment, key, ...) by busy time, with idle as its own row or shared out; table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import typer
from rich.table import Column, Table

from costwarden.cli.common import (
    ConfigOption,
    config_or_exit,
    console,
    errors,
    format_or_exit,
    progress,
    query_or_exit,
    with_store,
)
from costwarden.config import Config
from costwarden.domain.money import usd_text
from costwarden.services.allocation import (
    AllocationQuery,
    AllocationReport,
    allocation,
    build_allocation_query,
    report_json,
    row_json,
)
from costwarden.services.reports import iso_time
from costwarden.storage.factory import open_samples

FIGURES = (
    ("requests", "requests"),
    ("busySeconds", "busy s"),
    ("gpuHours", "GPU h"),
    ("cpuCoreHours", "core h"),
    ("ramGiBHours", "GiB h"),
    ("usedCost", "used USD"),
    ("idleCost", "idle USD"),
    ("totalCost", "total USD"),
    ("efficiency", "efficiency"),
    ("costPer1kRequests", "per 1k req"),
)


def allocation_command(
    by: str = typer.Option("team", "--by", help="Comma-separated: team, project, environment, key_id, deployment."),
    since: str | None = typer.Option(None, help="Window ending now (or --to), e.g. 30m, 24h, 7d [default: 24h]."),
    start: str | None = typer.Option(None, "--from", help="Window start, ISO 8601 (UTC unless an offset is given)."),
    end: str | None = typer.Option(None, "--to", help="Window end, ISO 8601 [default: now]."),
    idle: str = typer.Option("separate", "--idle", help="separate | share-weighted | share-even | hide"),
    output: str = typer.Option("table", "--format", help="table | csv | json"),
    config: Path | None = ConfigOption,
) -> None:
    """Split each deployment's replica cost (replicas x hardware price x time) by busy time; idle shown."""
    format_or_exit(output)
    cfg = config_or_exit(config)
    query = query_or_exit(lambda: build_allocation_query(by, since, start, end, idle, time.time()))
    shown = errors.is_terminal  # a bar with a total costs a count query: only when someone sees it
    with progress(bar=shown) as line:
        task = line.add_task("reading the ledger", total=None)
        scanned = [0]

        def on_page(count: int) -> None:
            scanned[0] += count
            line.update(task, description=f"reading the ledger: {scanned[0]:,} records", completed=scanned[0])

        def on_total(count: int) -> None:
            line.update(task, total=max(count, 1))

        report = with_store(cfg, lambda store: _allocate(cfg, query, on_page, on_total if shown else None))
    data = report_json(report)
    if output == "json":
        typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
    elif output == "csv":
        typer.echo(_csv(report), nl=False)
    else:
        console.print(_table(report))
        for note in report.notes:
            errors.print(f"[yellow]note:[/] {note}", soft_wrap=True)


async def _allocate(
    cfg: Config, query: AllocationQuery, on_page: Callable[[int], None], on_total: Callable[[int], None] | None
) -> AllocationReport:
    """After `with_store` opened the ledger (its migrations are applied), read it and the samples."""
    samples = open_samples(cfg.storage.ledger) if cfg.compute.collectors else None
    try:
        return await allocation(cfg, query, samples, on_page, on_total)
    finally:
        if samples is not None:
            await samples.close()


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(report: AllocationReport) -> Table:
    by, query = report.query.by, report.query
    title = f"allocation by {', '.join(by)}, [{iso_time(query.start)}, {iso_time(query.end)}), idle {query.idle}"
    columns = [Column(g, overflow="fold") for g in by] + [Column(h, justify="right", no_wrap=True) for _, h in FIGURES]
    table = Table(*columns, title=title)
    rows = [row_json(r, by) for r in report.allocation.rows]
    for i, row in enumerate(rows):
        cells = [f"{row[k]:.1%}" if k == "efficiency" else _cell(row[k]) for k, _ in FIGURES]
        table.add_row(*row["name"].split("/"), *cells, end_section=i == len(rows) - 1)
    result = report.allocation
    total = ["provisioned"] + [""] * (len(by) - 1)
    figures = {"usedCost": result.used_usd, "idleCost": result.idle_usd, "totalCost": result.provisioned_usd}
    cells = [usd_text(figures[k]) if k in figures else "" for k, _ in FIGURES]
    cells[[k for k, _ in FIGURES].index("efficiency")] = f"{result.efficiency:.1%}"
    table.add_row(*total, *cells, style="bold")
    table.caption = "; ".join(f"{dep}: {basis}" for dep, basis in result.bases.items())
    return table


def _csv(report: AllocationReport) -> str:
    out = io.StringIO()
    rows = [row_json(r, report.query.by) for r in report.allocation.rows]
    fields = [*report.query.by, *(k for k, _ in FIGURES), "tokens", "costPer1MTokens"]
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row["properties"], **row})
    return out.getvalue()
