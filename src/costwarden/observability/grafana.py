"""The Grafana dashboard, built in code with grafana-foundation-sdk (the `grafana` extra).

Spend by team and deployment, unit costs, latency, budgets and their burn rates, alerts and the
ledger; a datasource variable and team/deployment variables. Queries read the recording rules of
observability/rules.py where one exists, so the dashboard and the alerts agree.
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import gauge, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

UID = "costwarden-overview"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
SCOPE = 'team=~"$team", deployment=~"$deployment"'
DEPLOYMENT = 'deployment=~"$deployment"'

Query = tuple[str, str]  # (PromQL, legend)


def _query(expr: str, legend: str, ref: str) -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)


def _series(title: str, unit: str, queries: list[Query], stacked: bool = False, description: str = "") -> Any:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(8)
        .span(12)
        .fill_opacity(25 if stacked else 5)
        .legend(common_builders.VizLegendOptions().show_legend(True).display_mode(common.LegendDisplayMode.TABLE)
                .placement(common.LegendPlacement.BOTTOM).calcs(["mean", "lastNotNull"]))
    )
    if stacked:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    for i, (expr, legend) in enumerate(queries):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + i)))
    return panel


def _thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return dash.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps([Threshold(v, c) for v, c in steps])


def _variable(name: str, label: str) -> dash.QueryVariable:
    return (
        dash.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(f"label_values(costwarden_requests_total, {name})")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(VariableOption(selected=True, text="All", value="$__all"))
    )


def _spend() -> list[Any]:
    total = (
        stat.Panel()
        .title("Spend in range")
        .description("Cost attributed over the dashboard's time range (the ledger holds the exact figure).")
        .datasource(DATASOURCE)
        .unit("currencyUSD")
        .decimals(4)
        .height(8)
        .span(6)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .with_target(_query(f"sum(increase(costwarden_cost_usd_total{{{SCOPE}}}[$__range]))", "spend", "A"))
    )
    return [
        _series(
            "Spend rate by team",
            "currencyUSD",
            [(f"3600 * sum by (team) (team_deployment:costwarden_cost_usd:rate5m{{{SCOPE}}})", "{{team}}")],
            stacked=True,
            description="USD per hour, from the 5-minute spend rate.",
        ).span(9),
        _series(
            "Spend rate by deployment",
            "currencyUSD",
            [(f"3600 * sum by (deployment) (team_deployment:costwarden_cost_usd:rate5m{{{SCOPE}}})", "{{deployment}}")],
            stacked=True,
            description="USD per hour, from the 5-minute spend rate.",
        ).span(9),
        total,
    ]


def _unit_costs() -> list[Any]:
    tokens = f'costwarden_tokens_total{{{SCOPE}, direction=~"input|output"}}'
    return [
        _series(
            "Cost per 1k requests",
            "currencyUSD",
            [(f"deployment:costwarden_cost_per_1k_requests_usd:rate5m{{{DEPLOYMENT}}}", "{{deployment}}")],
        ),
        _series(
            "Cost per 1M tokens",
            "currencyUSD",
            [
                (
                    f"1e6 * sum by (deployment) (rate(costwarden_cost_usd_total{{{SCOPE}}}[$__rate_interval])) "
                    f"/ (sum by (deployment) (rate({tokens}[$__rate_interval])) > 0)",
                    "{{deployment}}",
                )
            ],
        ),
    ]


def _latency() -> list[Any]:
    def quantile(q: float, phase: str) -> Query:
        buckets = f'costwarden_request_duration_seconds_bucket{{{DEPLOYMENT}, phase="{phase}"}}'
        expr = f"histogram_quantile({q}, sum by (le, deployment) (rate({buckets}[$__rate_interval])))"
        return expr, f"{{{{deployment}}}} p{round(q * 100)}"

    first_token = f"costwarden_time_to_first_token_seconds_bucket{{{DEPLOYMENT}}}"
    return [
        _series("Upstream latency", "s", [quantile(0.5, "upstream"), quantile(0.95, "upstream")]),
        _series(
            "Gateway overhead",
            "s",
            [quantile(0.5, "overhead"), quantile(0.99, "overhead")],
            description="Time the gateway adds to each request (gateway minus upstream).",
        ),
        _series(
            "Time to first token (streams)",
            "s",
            [
                (
                    f"histogram_quantile(0.95, sum by (le, deployment) (rate({first_token}[$__rate_interval])))",
                    "{{deployment}} p95",
                )
            ],
        ),
        _series(
            "Failed requests",
            "percentunit",
            [(f"deployment:costwarden_request_errors:ratio_rate5m{{{DEPLOYMENT}}}", "{{deployment}}")],
            description="Share of requests that failed upstream (5xx, timeouts, broken answers).",
        ),
    ]


def _budgets() -> list[Any]:
    utilisation = (
        gauge.Panel()
        .title("Budget utilisation")
        .description("Settled spend over each budget's limit in its current window.")
        .datasource(DATASOURCE)
        .unit("percentunit")
        .min(0)
        .max(1)
        .height(8)
        .span(8)
        .thresholds(_thresholds((None, "green"), (0.8, "orange"), (1.0, "red")))
        .with_target(_query("max by (budget) (costwarden_budget_utilisation_ratio)", "{{budget}}", "A"))
    )
    burn = _series(
        "Budget burn rate",
        "x",
        [
            ("budget:costwarden_budget_burn_rate:1h", "{{budget}} 1h"),
            ("budget:costwarden_budget_burn_rate:6h", "{{budget}} 6h"),
        ],
        description="Spend relative to the budget's even pace: 1 spends it exactly by the window's end; "
        "the alerts page at 14.4 (1h) and 6 (6h).",
    ).span(8)
    forecast = _series(
        "Budget forecast vs limit",
        "currencyUSD",
        [
            ("max by (budget) (costwarden_budget_forecast_usd)", "{{budget}} forecast"),
            ("max by (budget) (costwarden_budget_limit_usd)", "{{budget}} limit"),
        ],
    ).span(8)
    return [utilisation, burn, forecast]


def _operations() -> list[Any]:
    alerts = (
        table.Panel()
        .title("Firing alerts")
        .description("costwarden's alerts firing now (from `costwarden export prometheus-rules`).")
        .datasource(DATASOURCE)
        .height(8)
        .span(12)
        .with_target(
            _query('ALERTS{alertstate="firing", alertname=~"Costwarden.*"}', "{{alertname}}", "A").instant()
        )
    )
    ledger = _series(
        "Ledger lag",
        "s",
        [("max by (instance) (costwarden_ledger_oldest_wait_seconds)", "{{instance}}")],
        description="How long the oldest record not yet in the ledger has waited (spooled).",
    )
    # Per-process gauges: with `server.workers` > 1 each worker has its own series (label `worker`),
    # so the gateway's figure is their sum. Gauges read from shared state (budgets) take `max` instead.
    inflight = _series(
        "Requests in flight",
        "short",
        [(f"sum by (deployment) (costwarden_inflight_requests{{{DEPLOYMENT}}})", "{{deployment}}")],
        description="Requests being forwarded now, over every replica and worker.",
    )
    backlog = _series(
        "Ledger backlog",
        "short",
        [("sum by (instance) (costwarden_ledger_backlog)", "{{instance}}")],
        description="Records spooled, not yet in the ledger (every worker of the instance).",
    )
    return [alerts, ledger, inflight, backlog]


def build_dashboard() -> dict[str, Any]:
    builder = (
        dash.Dashboard("costwarden: AI inference cost")
        .uid(UID)
        .tags(["costwarden", "finops"])
        .time("now-6h", "now")
        .refresh("1m")
        .timezone("browser")
        .with_variable(
            dash.DatasourceVariable("datasource")
            .label("Data source")
            .type("prometheus")
        )
        .with_variable(_variable("team", "Team"))
        .with_variable(_variable("deployment", "Deployment"))
    )
    for title, panels in (
        ("Spend", _spend()),
        ("Unit costs", _unit_costs()),
        ("Latency and errors", _latency()),
        ("Budgets", _budgets()),
        ("Alerts and ledger", _operations()),
    ):
        builder = builder.with_row(dash.Row(title))
        for panel in panels:
            builder = builder.with_panel(panel)
    data: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return data


def dashboard_json() -> str:
    return json.dumps(build_dashboard(), indent=2, sort_keys=True) + "\n"


def panel_queries(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query in a dashboard's JSON, rows included."""
    found = []
    for panel in data.get("panels", []):
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                if "expr" in target:
                    found.append((inner.get("title", ""), target["expr"]))
    return found
