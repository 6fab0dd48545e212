"""Prometheus recording and alerting rules for costwarden's metrics, built in code.

Recording rules name the spend rates, unit costs, error ratios and budget burn rates once; alerts
read them. Budget alerts follow the multi-window, multi-burn-rate scheme of the Google SRE
workbook ("Alerting on SLOs"): a burn rate of 1 spends exactly the budget over its window; each
alert needs a long window (significance) and a short one (it stops soon after the burn does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

DURATIONS = {"5m": 300, "30m": 1800, "1h": 3600, "6h": 21600, "3d": 259200}
BUDGET = "budget, scope, window, tz"
# (severity, burn rate, long window, short window, `for`): the SRE workbook's table for a 30-day
# budget — 2 % of it spent in an hour, 5 % in six hours (page), 10 % in three days (ticket).
BURN_ALERTS = (
    ("CostwardenBudgetBurnRateCritical", "critical", 14.4, "1h", "5m", "2m"),
    ("CostwardenBudgetBurnRateHigh", "critical", 6.0, "6h", "30m", "15m"),
    ("CostwardenBudgetBurnRateElevated", "warning", 1.0, "3d", "6h", "1h"),
)


@dataclass(frozen=True, slots=True)
class RuleOptions:
    """Thresholds of the alerts (the recording rules have none)."""

    runbook_base: str = "docs/runbooks.md"
    spike_factor: float = 3.0  # 5-minute spend rate over the day's average hourly rate
    spike_min_usd_per_hour: float = 1.0  # below this a deployment's spend is no spike worth a page
    error_ratio: float = 0.05
    error_min_rps: float = 0.1
    ledger_lag_seconds: float = 60.0
    ledger_stall_seconds: float = 300.0


def burn_rate_record(window: str) -> str:
    return f"budget:costwarden_budget_burn_rate:{window}"


def recording_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    cost = "rate(costwarden_cost_usd_total[{w}])"
    requests = "rate(costwarden_requests_total[{w}])"
    for level in ("team", "deployment", "team, deployment"):
        name = level.replace(", ", "_")
        for w in ("5m", "1h"):
            rules.append(_record(f"{name}:costwarden_cost_usd:rate{w}", f"sum by ({level}) ({cost.format(w=w)})"))
    for level in ("team", "deployment"):
        rules.append(
            _record(
                f"{level}:costwarden_cost_per_1k_requests_usd:rate5m",
                f"1000 * sum by ({level}) ({cost.format(w='5m')}) / (sum by ({level}) ({requests.format(w='5m')}) > 0)",
            )
        )
    # Spend since each gateway started, summed over replicas: what the ledger holds for that span.
    rules.append(_record("team:costwarden_cost_usd:sum", "sum by (team) (costwarden_cost_usd_total)"))
    rules.append(_record("deployment:costwarden_cost_usd:sum", "sum by (deployment) (costwarden_cost_usd_total)"))
    rules.append(
        _record(
            "deployment:costwarden_request_errors:ratio_rate5m",
            f'sum by (deployment) (rate(costwarden_requests_total{{outcome="failed"}}[5m])) '
            f"/ sum by (deployment) ({requests.format(w='5m')})",
        )
    )
    for window in sorted({w for alert in BURN_ALERTS for w in alert[3:5]}, key=DURATIONS.__getitem__):
        # Spend over the window relative to spending the whole budget evenly over its own window.
        # Replicas report the same shared budget: `max` keeps one series. A drop (a new window
        # instance) counts as no spend.
        rules.append(
            _record(
                burn_rate_record(window),
                f"max by ({BUDGET}) (clamp_min(delta(costwarden_budget_spent_usd[{window}]), 0) "
                f"/ costwarden_budget_limit_usd * costwarden_budget_window_seconds / {DURATIONS[window]})",
            )
        )
    return rules


def alerting_rules(options: RuleOptions) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = []
    for name, severity, factor, long, short, hold in BURN_ALERTS:
        alerts.append(
            _alert(
                name,
                f"{burn_rate_record(long)} > {factor} and {burn_rate_record(short)} > {factor}",
                hold,
                severity,
                f"Budget {{{{ $labels.budget }}}} is burning at {factor:g}x its even pace or faster",
                f"Over the last {long} (and still over the last {short}) budget {{{{ $labels.budget }}}} "
                f"({{{{ $labels.scope }}}}, {{{{ $labels.window }}}}) spent more than {factor:g} times its "
                "even share of the window.",
                options.runbook_base,
                "budget-burn-rate",
            )
        )
    alerts.append(
        _alert(
            "CostwardenBudgetExhausted",
            f"max by ({BUDGET}) (costwarden_budget_utilisation_ratio) >= 1",
            "1m",
            "warning",
            "Budget {{ $labels.budget }} is spent",
            "Budget {{ $labels.budget }} ({{ $labels.scope }}) has spent its limit for this {{ $labels.window }}: "
            "requests in its scope are blocked or degraded by its action.",
            options.runbook_base,
            "budget-exhausted",
        )
    )
    alerts.append(
        _alert(
            "CostwardenCostSpike",
            f"deployment:costwarden_cost_usd:rate5m > {options.spike_factor:g} * "
            "avg_over_time(deployment:costwarden_cost_usd:rate1h[1d]) "
            f"and deployment:costwarden_cost_usd:rate5m * 3600 > {options.spike_min_usd_per_hour:g}",
            "10m",
            "warning",
            "Spend on {{ $labels.deployment }} is spiking",
            f"{{{{ $labels.deployment }}}} spends {{{{ $value | humanize }}}} USD/s, over {options.spike_factor:g} "
            "times its average of the last day.",
            options.runbook_base,
            "cost-spike",
        )
    )
    alerts.append(
        _alert(
            "CostwardenGatewayErrorRatioHigh",
            f"deployment:costwarden_request_errors:ratio_rate5m > {options.error_ratio:g} "
            f"and sum by (deployment) (rate(costwarden_requests_total[5m])) > {options.error_min_rps:g}",
            "10m",
            "warning",
            "{{ $labels.deployment }}: {{ $value | humanizePercentage }} of requests fail",
            "Requests to {{ $labels.deployment }} fail (upstream errors, timeouts, broken answers) at "
            f"{{{{ $value | humanizePercentage }}}}, above {options.error_ratio:.0%}.",
            options.runbook_base,
            "gateway-errors",
        )
    )
    for name, seconds, severity in (
        ("CostwardenLedgerLagging", options.ledger_lag_seconds, "warning"),
        ("CostwardenLedgerStalled", options.ledger_stall_seconds, "critical"),
    ):
        alerts.append(
            _alert(
                name,
                f"max by (instance) (costwarden_ledger_oldest_wait_seconds) > {seconds:g}",
                "5m",
                severity,
                "The ledger is {{ $value | humanizeDuration }} behind on {{ $labels.instance }}",
                "Records wait in the spool: reports, budgets seeded from the ledger and the FOCUS export lag "
                "behind the traffic (nothing is lost; the spool is replayed when the database answers).",
                options.runbook_base,
                "ledger-lag",
            )
        )
    return alerts


def rule_groups(options: RuleOptions | None = None) -> dict[str, Any]:
    options = options or RuleOptions()
    return {
        "groups": [
            {"name": "costwarden.recording", "interval": "30s", "rules": recording_rules()},
            {"name": "costwarden.alerts", "interval": "30s", "rules": alerting_rules(options)},
        ]
    }


def rules_yaml(options: RuleOptions | None = None) -> str:
    header = "# Generated by `costwarden export prometheus-rules`; see docs/metrics.md.\n"
    return header + yaml.safe_dump(rule_groups(options), sort_keys=False, width=200)


def _record(name: str, expr: str) -> dict[str, Any]:
    return {"record": name, "expr": expr}


def _alert(
    name: str, expr: str, hold: str, severity: str, summary: str, description: str, runbook: str, anchor: str
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": hold,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description, "runbook_url": f"{runbook}#{anchor}"},
    }
