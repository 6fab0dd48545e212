"""`costwarden report`: spend per group as a table, CSV or JSON (money as strings)."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import orjson
import typer
from rich.table import Table

from costwarden.cli.common import ConfigOption, config_or_exit, console, errors, with_store
from costwarden.domain.report import QueryError, SpendReport
from costwarden.services.reports import build_query, report_json, row_json, spend


def render_table(report: SpendReport, title: str = "spend") -> Table:
    groups = report.query.group_by
    table = Table(
        *groups, "requests", "errors", "in tok", "out tok", "cost USD", "per 1k req", "p50 ms", "p95 ms", title=title
    )
    for col in table.columns[len(groups) :]:
        col.justify = "right"

    def cells(values: list[str], row_index: int) -> None:
        table.add_row(*values, end_section=row_index == len(report.rows) - 1)

    for i, row in enumerate(report.rows):
        cells([*(g if g is not None else "-" for g in row.group), *_numbers(row)], i)
    total = report.total
    table.add_row(*(["[bold]total[/]"] + [""] * (len(groups) - 1) if groups else []), *_numbers(total), style="bold")
    if report.percentile_error:
        table.caption = f"p50/p95 from rollup histograms, within {report.percentile_error:.0%}"
    return table


def _numbers(row: object) -> list[str]:
    from costwarden.domain.report import SpendRow

    assert isinstance(row, SpendRow)
    return [
        f"{row.requests:,}",
        f"{row.errors:,}",
        f"{row.input_tokens:,}",
        f"{row.output_tokens:,}",
        f"{row.cost_usd:.6f}",
        f"{row.cost_per_1k_requests:.6f}",
        "-" if row.p50_ms is None else f"{row.p50_ms:.1f}",
        "-" if row.p95_ms is None else f"{row.p95_ms:.1f}",
    ]


def render_csv(report: SpendReport) -> str:
    out = io.StringIO()
    rows = [row_json(r, report.query.group_by) for r in report.rows]
    total = {**{g: "TOTAL" for g in report.query.group_by}, **row_json(report.total, ())}
    fields = list(total)
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    writer.writerows([*rows, total])
    return out.getvalue()


def report(
    by: str = typer.Option(
        "team", "--by", help="Comma-separated: team, project, environment, deployment, key_id, model, ..."
    ),
    since: str | None = typer.Option(None, help="Window ending now, e.g. 30m, 24h, 7d."),
    start: str | None = typer.Option(None, "--from", help="Window start, ISO 8601 (UTC unless an offset is given)."),
    end: str | None = typer.Option(None, "--to", help="Window end, ISO 8601."),
    where: list[str] = typer.Option([], "--where", help="Filter name=value, e.g. env=prod (repeatable)."),
    output: str = typer.Option("table", "--format", help="table | csv | json"),
    config: Path = ConfigOption,
) -> None:
    """Spend per group, with the total: requests, errors, tokens, cost, cost per 1k requests, p50/p95 latency."""
    if output not in ("table", "csv", "json"):
        errors.print(f"[red]--format {output!r}[/]: expected table, csv or json")
        raise typer.Exit(2)
    cfg = config_or_exit(config)
    try:
        query = build_query(by, since, start, end, where, time.time())
    except QueryError as exc:
        errors.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    result = with_store(cfg, lambda store: spend(store, query))
    if output == "json":
        typer.echo(orjson.dumps(report_json(result), option=orjson.OPT_INDENT_2).decode())
    elif output == "csv":
        typer.echo(render_csv(result), nl=False)
    else:
        console.print(render_table(result, title=f"spend by {', '.join(query.group_by)}"))
