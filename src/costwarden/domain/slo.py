"""Service-level objectives: parse `p99<=250ms, ttft<=200ms, errors<=0.5%` and judge a run by them.

A run is described by named statistics: `latency_p99_ms`, `ttft_p99_ms`, `tpot_p50_ms`,
`error_rate` (a fraction). Each clause names one statistic and an upper bound.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation


class SloError(ValueError):
    """An SLO text that does not parse; the message names the clause and the accepted forms."""


FORMS = "p50|p90|p95|p99|max (latency), ttft[_pNN], tpot[_pNN], errors; e.g. p99<=250ms, ttft_p90<200ms, errors<=0.5%"
_CLAUSE = re.compile(
    r"^(?P<metric>p50|p90|p95|p99|max|ttft|tpot|errors|error_rate)(?:_(?P<q>p50|p90|p95|p99|max))?"
    r"\s*(?P<op><=|<)\s*(?P<value>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>ms|s|us|%)?$"
)
_TO_MS = {"ms": Decimal(1), "s": Decimal(1000), "us": Decimal("0.001")}
_MAX_MS = Decimal(86_400_000)  # a day: anything longer is a typo, not an objective


@dataclass(frozen=True, slots=True)
class Objective:
    """One bound: `stat` (a statistic's name) must stay below `limit` (ms, or a fraction for errors)."""

    stat: str
    limit: Decimal
    inclusive: bool
    text: str

    def met_by(self, value: float) -> bool:
        bound = float(self.limit)
        return value <= bound if self.inclusive else value < bound


@dataclass(frozen=True, slots=True)
class Slo:
    objectives: tuple[Objective, ...]
    text: str

    def violations(self, stats: Mapping[str, float | None]) -> list[str]:
        """What the run misses, one line per objective (empty: the run meets the SLO)."""
        found: list[str] = []
        for objective in self.objectives:
            value = stats.get(objective.stat)
            if value is None:
                found.append(f"{objective.text}: the run has no {objective.stat}")
            elif not objective.met_by(value):
                found.append(f"{objective.text}: measured {value:g}")
        return found

    def met(self, stats: Mapping[str, float | None]) -> bool:
        return not self.violations(stats)


def parse_slo(text: str) -> Slo:
    """`p99<=250ms` or several clauses joined by `,` or ` and `; raises SloError."""
    clauses = [c.strip() for c in re.split(r",|\band\b", text.strip()) if c.strip()]
    if not clauses:
        raise SloError(f"the SLO {text!r} is empty; expected for example {FORMS}")
    return Slo(tuple(_objective(clause) for clause in clauses), text.strip())


def _objective(clause: str) -> Objective:
    match = _CLAUSE.match(clause.lower())
    if match is None:
        raise SloError(f"cannot read the SLO clause {clause!r}; accepted: {FORMS}")
    metric, quantile, unit = match["metric"], match["q"], match["unit"]
    try:
        value = Decimal(match["value"])
    except InvalidOperation as exc:  # pragma: no cover - the pattern admits only digits
        raise SloError(f"{clause!r}: {match['value']!r} is not a number") from exc
    inclusive = match["op"] == "<="
    if metric in ("errors", "error_rate"):
        if quantile is not None or unit not in ("%", None):
            raise SloError(f"{clause!r}: an error bound is a percentage (errors<=0.5%) or a fraction (errors<=0.005)")
        limit = value / 100 if unit == "%" else value
        if limit > 1:
            raise SloError(f"{clause!r}: an error rate cannot exceed 100%")
        return Objective("error_rate", limit, inclusive, clause)
    if unit is None or unit == "%":
        raise SloError(f"{clause!r}: give a time unit (ms, s or us), e.g. {metric}<=250ms")
    if metric in ("ttft", "tpot"):
        stat = f"{metric}_{quantile or 'p99'}_ms"
    elif quantile is not None:
        raise SloError(f"{clause!r}: a latency clause is just {metric}<=..., without a second quantile")
    else:
        stat = f"latency_{metric}_ms"
    limit = value * _TO_MS[unit]
    if limit <= 0 or limit > _MAX_MS:
        raise SloError(f"{clause!r}: the bound must be above 0 and at most a day")
    return Objective(stat, limit, inclusive, clause)
