"""Prometheus view of governance: budget gauges, rejections by reason, quota use, alert delivery.

A `Collector` reads the governor's latest budget views when scraped, so the request path pays
nothing for these metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from costwarden.chain.admit import StoreHealth
from costwarden.domain.window import Window
from costwarden.services.budgets import BudgetView
from costwarden.storage.breaker import BreakerState, CounterBreaker


def window_labels(window: Window) -> tuple[str, str]:
    """`window` and `tz` label values that any tool can match without quoting: `month` / `Europe/Berlin`,
    `rolling_86400s` / `` (a rolling window has no zone)."""
    if window.rolling_seconds is not None:
        return f"rolling_{window.rolling_seconds}s", ""
    return str(window.unit), window.tz


class GovernanceCollector(Collector):
    def __init__(
        self,
        views: Callable[[], dict[str, BudgetView]],
        health: StoreHealth,
        slots: Callable[[], dict[str, int]],
        alert_counts: Callable[[], dict[str, int]],
        breaker: CounterBreaker | None = None,
    ) -> None:
        self._views = views
        self._health = health
        self._slots = slots
        self._alert_counts = alert_counts
        self._breaker = breaker

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        gauges = {
            name: GaugeMetricFamily(f"costwarden_budget_{name}", text, labels=["budget", "scope", "window", "tz"])
            for name, text in (
                ("limit_usd", "The budget's limit in USD."),
                ("spent_usd", "Settled spend in the budget's current window, USD."),
                ("reserved_usd", "Held by requests in flight, USD."),
                ("remaining_usd", "What requests may still reserve this window, USD."),
                ("utilisation_ratio", "Settled spend over the limit (1 = 100 %)."),
                ("forecast_usd", "Spend projected to the end of the window at the current burn rate, USD."),
                ("window_seconds", "Length of the budget's current window instance, seconds."),
            )
        }
        # Scrapes run in a worker thread: iterate over snapshots, never over the loop's live dicts.
        for view in list(self._views().values()):
            budget = view.budget
            labels = [budget.id, str(budget.scope), *window_labels(budget.window)]
            gauges["limit_usd"].add_metric(labels, float(budget.limit_usd))
            gauges["spent_usd"].add_metric(labels, float(view.state.spent.usd))
            gauges["reserved_usd"].add_metric(labels, float(view.state.reserved.usd))
            gauges["remaining_usd"].add_metric(labels, float(view.remaining_usd))
            gauges["utilisation_ratio"].add_metric(labels, float(view.utilisation))
            gauges["window_seconds"].add_metric(labels, view.window_end - view.window_start)
            if view.forecast is not None:
                gauges["forecast_usd"].add_metric(labels, float(view.forecast.projected_spend))
        yield from gauges.values()
        rejections = CounterMetricFamily(
            "costwarden_admission_rejections", "Requests refused at admission, by reason.", labels=["reason"]
        )
        for reason, count in sorted(self._health.refused.items()):
            rejections.add_metric([reason], count)
        yield rejections
        reachable = GaugeMetricFamily("costwarden_state_store_up", "1 when the shared counter store answers.")
        reachable.add_metric([], 1.0 if self._health.reachable else 0.0)
        yield reachable
        if self._breaker is not None:
            current = self._breaker.state
            state = GaugeMetricFamily(
                "costwarden_state_store_breaker_state",
                "1 for the counter store circuit breaker's current state (open: failing fast).",
                labels=["state"],
            )
            for member in BreakerState:
                state.add_metric([member.value], 1.0 if member is current else 0.0)
            yield state
            trips = CounterMetricFamily("costwarden_state_store_breaker_trips", "Times the circuit breaker opened.")
            trips.add_metric([], self._breaker.trips)
            yield trips
        slots = GaugeMetricFamily(
            "costwarden_concurrency_active", "Requests in flight per concurrency quota (last seen).", labels=["quota"]
        )
        for key, active in sorted(self._slots().items()):
            slots.add_metric([key], active)
        yield slots
        alerts = CounterMetricFamily("costwarden_alert_deliveries", "Alert deliveries by result.", labels=["result"])
        for result, count in sorted(self._alert_counts().items()):
            alerts.add_metric([result], count)
        yield alerts
