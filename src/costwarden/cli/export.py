"""`costwarden export`: the ledger as a FOCUS billing file; Prometheus rules; the Grafana dashboard;
autoscaler manifests (KEDA, HPA) for scale-out capped by budget."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO, Any

import typer

from costwarden.cli.common import ConfigOption, config_or_exit, errors, plural, progress, with_store
from costwarden.domain.focus import Value
from costwarden.domain.money import format_usd
from costwarden.domain.report import QueryError
from costwarden.observability.rules import RuleOptions, rules_yaml
from costwarden.ports import Store
from costwarden.services.focus import FORMATS, ExportTally, FocusWindow, focus_rows, focus_window, issuer_of
from costwarden.services.focus_write import ParquetUnavailable, csv_stream, parquet_schema, write_parquet
from costwarden.services.reports import iso_time
from costwarden.services.scaling_export import ExportError, Target, hpa_object, keda_objects, manifests_yaml

app = typer.Typer(help="Export spend and monitoring definitions.", no_args_is_help=True)
DEFAULTS = RuleOptions()
OutputOption = typer.Option(None, "--output", "-o", help="File to write [default: stdout].")


@app.command("focus")
def focus(
    since: str | None = typer.Option(None, help="Window start: ISO 8601 (UTC unless an offset is given) or 30d, 24h."),
    until: str | None = typer.Option(None, help="Window end, ISO 8601 [default: now]."),
    output_format: str = typer.Option("csv", "--format", help="csv | parquet"),
    output: Path | None = typer.Option(None, "--output", "-o", help="File to write [default: stdout, CSV only]."),
    config: Path | None = ConfigOption,
) -> None:
    """The ledger as FOCUS 1.0 billing data: one row per hour, team, project, environment, deployment and charge."""
    if output_format not in FORMATS:
        errors.print(f"[red]--format {output_format!r}[/]: expected csv or parquet")
        raise typer.Exit(2)
    if output_format == "parquet" and output is None:
        errors.print("[red]--format parquet[/] needs --output FILE (Parquet is not written to a terminal)")
        raise typer.Exit(2)
    cfg = config_or_exit(config)
    try:
        window = focus_window(since, until, time.time())
        if output_format == "parquet":
            parquet_schema()
    except (QueryError, ParquetUnavailable) as exc:
        errors.print(f"[red]{exc}[/]", soft_wrap=True)
        raise typer.Exit(2) from exc
    tally = ExportTally()
    issuer = issuer_of(cfg)

    async def run(store: Store) -> None:
        with progress() as line:
            task = line.add_task("exporting", total=None)

            async def rows() -> AsyncIterator[list[dict[str, Value]]]:
                async for batch in focus_rows(store, window, issuer, tally):
                    line.update(task, description=f"{tally.records:,} records -> {tally.rows:,} rows")
                    yield batch

            if output is None:
                await _write_csv(rows(), sys.stdout.buffer)
                return
            with output.open("wb") as sink:
                if output_format == "parquet":
                    await write_parquet(rows(), sink)
                else:
                    await _write_csv(rows(), sink)

    try:
        with_store(cfg, run)
    except OSError as exc:
        errors.print(f"[red]cannot write {output}:[/] {exc.strerror or exc}", soft_wrap=True)
        raise typer.Exit(1) from exc
    errors.print(_summary(window, tally, output), soft_wrap=True)


async def _write_csv(rows: AsyncIterator[list[dict[str, Value]]], sink: IO[bytes]) -> None:
    async for chunk in csv_stream(rows):
        sink.write(chunk)
    sink.flush()


def _summary(window: FocusWindow, tally: ExportTally, output: Path | None) -> str:
    where = f" to {output}" if output is not None else ""
    span = f"[{iso_time(window.start)}, {iso_time(window.end)})"
    if not tally.records:
        return f"[yellow]no ledger records in {span}[/]: wrote the header only{where}"
    return (
        f"[green]exported[/] {plural(tally.records, 'record')} in {span} as {plural(tally.rows, 'FOCUS row')} "
        f"over {plural(len(tally.hours), 'hour')}{where}: total {format_usd(tally.cost)}"
    )


@app.command("prometheus-rules")
def prometheus_rules(
    output: Path | None = OutputOption,
    runbook_base: str = typer.Option(
        DEFAULTS.runbook_base, help="Where the runbooks are: each alert links <base>#<anchor>."
    ),
    spike_factor: float = typer.Option(DEFAULTS.spike_factor, min=1.0, help="Cost spike: 5m rate over the day's."),
    error_ratio: float = typer.Option(DEFAULTS.error_ratio, min=0.0, max=1.0, help="Failed share that alerts."),
    ledger_lag_seconds: float = typer.Option(DEFAULTS.ledger_lag_seconds, min=1.0, help="Ledger lag that warns."),
) -> None:
    """Prometheus recording and alerting rules (spend rates, unit costs, budget burn rates, spikes, errors, lag)."""
    options = RuleOptions(
        runbook_base=runbook_base,
        spike_factor=spike_factor,
        error_ratio=error_ratio,
        ledger_lag_seconds=ledger_lag_seconds,
        ledger_stall_seconds=max(DEFAULTS.ledger_stall_seconds, 5 * ledger_lag_seconds),
    )
    _emit(rules_yaml(options), output, "Prometheus rules")


def _emit(text: str, output: Path | None, what: str) -> None:
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text)
    except OSError as exc:
        errors.print(f"[red]cannot write {output}:[/] {exc.strerror or exc}", soft_wrap=True)
        raise typer.Exit(1) from exc
    errors.print(f"[green]wrote[/] {what} to {output}")


@app.command("grafana-dashboard")
def grafana_dashboard(
    output: Path | None = OutputOption,
) -> None:
    """The Grafana dashboard as JSON (import it, or provision it): spend, unit costs, latency, budgets, alerts."""
    try:
        from costwarden.observability.grafana import dashboard_json
    except ImportError as exc:
        errors.print("[red]the dashboard is built with grafana-foundation-sdk:[/] pip install 'costwarden[grafana]'")
        raise typer.Exit(2) from exc
    _emit(dashboard_json(), output, "the Grafana dashboard")


def _target(
    deployment: str, target: str | None, kind: str, api_version: str, namespace: str | None, url: str, secret: str
) -> Target:
    return Target(target or deployment, kind, api_version, namespace, url, secret)


DeploymentOption = typer.Option(..., help="A deployment with `compute.scaling`.")
TargetOption = typer.Option(None, help="The workload to scale [default: the deployment's name].")
KindOption = typer.Option("Deployment", help="Its kind (Deployment, StatefulSet, ...).")
ApiOption = typer.Option("apps/v1", help="Its apiVersion.")
NamespaceOption = typer.Option(None, help="metadata.namespace of the objects written.")


@app.command("keda")
def keda(
    deployment: str = DeploymentOption,
    target: str | None = TargetOption,
    target_kind: str = KindOption,
    target_api_version: str = ApiOption,
    namespace: str | None = NamespaceOption,
    gateway_url: str = typer.Option("http://costwarden:8700", help="The gateway as KEDA's operator reaches it."),
    secret: str = typer.Option("costwarden-scaling", help="The Secret holding server.scaling_token under `token`."),
    output: Path | None = OutputOption,
    config: Path | None = ConfigOption,
) -> None:
    """A KEDA ScaledObject (metrics-api trigger on GET /scaling/v1/DEPLOYMENT) and its TriggerAuthentication."""
    cfg = config_or_exit(config)
    where = _target(deployment, target, target_kind, target_api_version, namespace, gateway_url, secret)
    what = "the KEDA ScaledObject and TriggerAuthentication"
    _emit_manifests(lambda: keda_objects(cfg, deployment, where), output, what)


@app.command("hpa")
def hpa(
    deployment: str = DeploymentOption,
    target: str | None = TargetOption,
    target_kind: str = KindOption,
    target_api_version: str = ApiOption,
    namespace: str | None = NamespaceOption,
    output: Path | None = OutputOption,
    config: Path | None = ConfigOption,
) -> None:
    """An autoscaling/v2 HorizontalPodAutoscaler on the External metric costwarden_scaling_replicas (needs an
    external-metrics adapter, e.g. prometheus-adapter: docs/compute.md)."""
    cfg = config_or_exit(config)
    where = _target(deployment, target, target_kind, target_api_version, namespace, "", "")
    _emit_manifests(lambda: [hpa_object(cfg, deployment, where)], output, "the HorizontalPodAutoscaler")


def _emit_manifests(build: Callable[[], list[dict[str, Any]]], output: Path | None, what: str) -> None:
    """The manifests `build` makes, as YAML; a deployment they cannot be made for exits 2, saying why."""
    try:
        objects = build()
    except ExportError as exc:
        errors.print(f"[red]{exc}[/]", soft_wrap=True)
        raise typer.Exit(2) from exc
    _emit(manifests_yaml(objects), output, what)
