"""Spike watching: each closed window's requests and cost per deployment and per team, read from
the ledger (the truth shared by all replicas), fed to the pure spike detector."""

from __future__ import annotations

from decimal import Decimal

from costwarden.domain.alert import AlertKind, Condition, Severity
from costwarden.domain.report import SpendQuery
from costwarden.domain.spike import SeriesState, SpikeDetector, observe
from costwarden.ports import LedgerStore

DIMENSIONS = ("deployment", "team")


class SpikeWatch:
    def __init__(self, detector: SpikeDetector, ledger: LedgerStore, settle_lag: float) -> None:
        self._detector = detector
        self._ledger = ledger
        self._lag = settle_lag  # how long after a window ends its records are surely in the ledger
        self._series: dict[tuple[str, str, str], SeriesState] = {}
        self._next_window: float | None = None
        self.firing: dict[str, Condition] = {}  # fingerprint -> condition, while a spike lasts
        self.shadow: dict[str, Condition] = {}  # the same in shadow mode: recorded, never notified

    async def step(self, now: float) -> list[Condition]:
        """Evaluate every window that closed since the last step; return the conditions that hold."""
        size = self._detector.window_seconds
        if self._next_window is None:
            self._next_window = self._detector.window_of(now - self._lag) - size
        while self._next_window + size + self._lag <= now:
            await self._window(self._next_window, now)
            self._next_window += size
        return list(self.firing.values())

    async def _window(self, start: float, now: float) -> None:
        end = start + self._detector.window_seconds
        for dimension in DIMENSIONS:
            report = await self._ledger.spend(SpendQuery(group_by=(dimension,), start=start, end=end))
            seen = {row.group[0]: row for row in report.rows if row.group[0] is not None}
            names = set(seen) | {name for (dim, name, _) in self._series if dim == dimension}
            for name in sorted(n for n in names if n is not None):
                row = seen.get(name)
                requests = row.requests if row else 0
                cost = row.cost_usd if row else Decimal(0)
                per_request = cost / requests if requests else Decimal(0)
                self._observe(dimension, name, "requests", float(requests), per_request, start, now)
                self._observe(dimension, name, "cost", float(cost), Decimal(1), start, now)

    def _observe(
        self, dimension: str, name: str, measure: str, value: float, usd_per_unit: Decimal, start: float, now: float
    ) -> None:
        key = (dimension, name, measure)
        state, decision = observe(self._detector, self._series.get(key, SeriesState()), value, start, now, usd_per_unit)
        self._series[key] = state
        kind = AlertKind.COST_SPIKE if measure == "cost" else AlertKind.VOLUME_SPIKE
        condition = Condition.of(
            kind,
            {dimension: name, "shadow": "true"} if decision.shadow else {dimension: name},
            Severity.WARNING,
            Decimal(repr(round(decision.observed, 6))),
            Decimal(repr(round(decision.expected, 6))),
            f"{measure} of {dimension} {name!r} is {decision.observed:.4g} per {self._detector.window_seconds:g}s "
            f"window against an expected {decision.expected:.4g} (z={decision.z:.1f}, "
            f"impact ${decision.impact_usd})",
        )
        book = self.shadow if decision.shadow else self.firing
        if decision.firing:
            book.setdefault(condition.fingerprint, condition)
        else:
            book.pop(condition.fingerprint, None)
