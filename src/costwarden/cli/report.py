"""`costwarden report`: spend per group as a table, CSV or JSON (money as fixed-point strings)."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Column, Table

from costwarden.cli.common import (
    ConfigOption,
    config_or_exit,
    console,
    format_or_exit,
    query_or_exit,
    with_store,
)
from costwarden.domain.money import usd_text
from costwarden.domain.report import SpendReport, SpendRow
from costwarden.domain.savings import SavingsBook, SavingsRow
from costwarden.services.reports import build_query, report_json, row_json, spend
from costwarden.services.savings import savings, savings_json

# Figures of a row, in column order; a narrow terminal drops the optional ones, last listed first.
FIGURES = ("requests", "errors", "in tok", "out tok", "items", "cost USD", "per 1k req", "p50 ms", "p95 ms")
DROP_ORDER = ("p95 ms", "per 1k req", "p50 ms", "errors", "in tok", "out tok", "items")
# The modal units (docs/modalities.md): a column each, after `items`, where the report has any.
UNIT_FIGURES = (
    ("reasoning_tokens", "reasoning tok"),
    ("images", "images"),
    ("audio_ms", "audio s"),
    ("characters", "chars"),
    ("documents", "docs"),
)


def _figures(row: SpendRow) -> dict[str, str]:
    return {
        "requests": f"{row.requests:,}",
        "errors": f"{row.errors:,}",
        "in tok": f"{row.input_tokens:,}",
        "out tok": f"{row.output_tokens:,}",
        "items": f"{row.items:,}",
        "reasoning tok": f"{row.reasoning_tokens:,}",
        "images": f"{row.images:,}",
        "audio s": f"{row.audio_ms / 1000:,.3f}",
        "chars": f"{row.characters:,}",
        "docs": f"{row.documents:,}",
        "cost USD": usd_text(row.cost_usd),
        "per 1k req": usd_text(row.cost_per_1k_requests),
        "p50 ms": "-" if row.p50_ms is None else f"{row.p50_ms:.1f}",
        "p95 ms": "-" if row.p95_ms is None else f"{row.p95_ms:.1f}",
    }


def _table(report: SpendReport, title: str, shown: tuple[str, ...]) -> Table:
    groups = report.query.group_by
    # Group names may fold onto a second line; a figure is never wrapped nor cut.
    columns = [Column(g, overflow="fold") for g in groups] + [
        Column(f, justify="right", no_wrap=True, min_width=len(f)) for f in shown
    ]
    table = Table(*columns, title=title)
    for i, row in enumerate(report.rows):
        figures = _figures(row)
        names = [g if g is not None else "-" for g in row.group]
        table.add_row(*names, *(figures[f] for f in shown), end_section=i == len(report.rows) - 1)
    figures = _figures(report.total)
    label = ["[bold]total[/]"] + [""] * (len(groups) - 1) if groups else []
    table.add_row(*label, *(figures[f] for f in shown), style="bold")
    if report.percentile_error:
        table.caption = f"p50/p95 from rollup histograms, within {report.percentile_error:.0%}"
    return table


def figures_of(report: SpendReport) -> tuple[str, ...]:
    """FIGURES with a column for each modal unit the report's total has, after `items`."""
    units = tuple(label for name, label in UNIT_FIGURES if getattr(report.total, name))
    at = FIGURES.index("items") + 1
    return (*FIGURES[:at], *units, *FIGURES[at:])


def render_table(report: SpendReport, title: str = "spend", width: int | None = None) -> Table:
    """The report as a table that fits `width` columns: optional figures go before a cost is cut."""
    figures = figures_of(report)
    shown: tuple[str, ...] = figures
    table = _table(report, title, shown)
    if width is None:
        return table
    measure = Console(width=10_000)
    for name in (*DROP_ORDER[:3], *(label for _, label in UNIT_FIGURES), *DROP_ORDER[3:]):
        if Measurement.get(measure, measure.options, table).maximum <= width:
            break
        shown = tuple(f for f in shown if f != name)
        table = _table(report, title, shown)
    hidden = [f for f in figures if f not in shown]
    if hidden:
        table.caption = f"not shown at {width} columns: {', '.join(hidden)} (widen the terminal or use --format csv)"
    return table


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
    show_savings: bool = typer.Option(
        False, "--savings", help="What cost actions (degrade to a cheaper variant) saved, by team and action."
    ),
    config: Path | None = ConfigOption,
) -> None:
    """Spend per group, with the total: requests, errors, tokens, items, cost, cost per 1k requests, p50/p95."""
    format_or_exit(output)
    cfg = config_or_exit(config)
    query = query_or_exit(lambda: build_query(by, since, start, end, where, time.time()))
    if show_savings:
        book = with_store(cfg, lambda store: savings(store, query))
        _print_savings(book, output)
        return
    result = with_store(cfg, lambda store: spend(store, query))
    if output == "json":
        typer.echo(orjson.dumps(report_json(result), option=orjson.OPT_INDENT_2).decode())
    elif output == "csv":
        typer.echo(render_csv(result), nl=False)
    else:
        console.print(render_table(result, f"spend by {', '.join(query.group_by)}", console.width))


def savings_table(book: SavingsBook) -> Table:
    table = Table(
        "team", "action", *(Column(f, justify="right", no_wrap=True) for f in _SAVINGS_FIGURES), title="savings"
    )
    rows = book.sorted_rows()
    for i, row in enumerate(rows):
        table.add_row(row.team or "-", row.action or "-", *_savings_figures(row), end_section=i == len(rows) - 1)
    table.add_row("[bold]total[/]", "", *_savings_figures(book.total()), style="bold")
    return table


_SAVINGS_FIGURES = ("requests", "fallbacks", "cost USD", "original USD", "saved USD")


def _savings_figures(row: SavingsRow) -> tuple[str, ...]:
    return (
        f"{row.requests:,}",
        f"{row.fallbacks:,}",
        usd_text(row.cost_usd),
        usd_text(row.original_cost_usd),
        usd_text(row.saved_usd),
    )


def _print_savings(book: SavingsBook, output: str) -> None:
    data = savings_json(book)
    if output == "json":
        typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
    elif output == "csv":
        out = io.StringIO()
        total = {**data["total"], "team": "TOTAL", "action": ""}
        writer = csv.DictWriter(out, fieldnames=list(total))
        writer.writeheader()
        writer.writerows([*data["rows"], total])
        typer.echo(out.getvalue(), nl=False)
    else:
        console.print(savings_table(book))
