"""The cost and latency gate: compare a current bench against a baseline, with stated statistics.

Cost is deterministic given tokens and prices: any increase above the threshold fails. Latency is
noisy: each side is a list of per-run values (one per repeated run) and the gate fails only when
the lower end of a bootstrap confidence interval of the ratio current/baseline of their medians
exceeds 1 + threshold, i.e. when it is confident the increase is larger than allowed. With one run
per side the interval is the point ratio.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

from costwarden.domain.percentiles import median


class Verdict(Enum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"  # not measured on one side (e.g. no tokens): nothing to compare


@dataclass(frozen=True, slots=True)
class Interval:
    low: float
    point: float
    high: float


@dataclass(frozen=True, slots=True)
class Finding:
    """One check: what was compared, both values, the change, the limit and the verdict."""

    name: str
    baseline: str
    current: str
    change: str
    limit: str
    verdict: Verdict
    detail: str = ""


def bootstrap_ratio(
    baseline: Sequence[float], current: Sequence[float], rng: random.Random, resamples: int = 2000, level: float = 0.95
) -> Interval:
    """Percentile bootstrap interval of median(current) / median(baseline), resampling each side."""
    if not baseline or not current:
        raise ValueError("each side needs at least one run")
    if min(baseline) <= 0 or min(current) < 0:
        raise ValueError("baseline values must be above zero, current ones not negative")
    point = median(current) / median(baseline)
    if len(baseline) == 1 and len(current) == 1:
        return Interval(point, point, point)
    ratios = sorted(
        median(rng.choices(current, k=len(current))) / median(rng.choices(baseline, k=len(baseline)))
        for _ in range(resamples)
    )
    tail = (1 - level) / 2
    low = ratios[int(tail * (resamples - 1))]
    high = ratios[int((1 - tail) * (resamples - 1))]
    return Interval(low, point, high)


def latency_check(
    name: str, baseline: Sequence[float], current: Sequence[float], max_increase: Decimal, rng: random.Random
) -> Finding:
    """Fail when the interval's lower end of current/baseline is above 1 + max_increase."""
    limit = f"+{_pct(max_increase)}"
    if not baseline or not current:
        return Finding(name, "-", "-", "-", limit, Verdict.SKIP, "not measured on both sides")
    if min(baseline) <= 0 or min(current) < 0:
        return Finding(name, "-", "-", "-", limit, Verdict.SKIP, "a baseline of zero has no ratio")
    interval = bootstrap_ratio(baseline, current, rng)
    failed = interval.low > 1 + float(max_increase)
    detail = (
        f"median of {len(current)} run(s) vs {len(baseline)}; 95% bootstrap CI of the ratio "
        f"[{interval.low:.3f}, {interval.high:.3f}]"
    )
    return Finding(
        name,
        f"{median(baseline):.3f} ms",
        f"{median(current):.3f} ms",
        f"{(interval.point - 1) * 100:+.1f}%",
        limit,
        Verdict.FAIL if failed else Verdict.PASS,
        detail,
    )


def cost_check(name: str, baseline: Decimal | None, current: Decimal | None, max_increase: Decimal) -> Finding:
    """Exact: fail when current > baseline * (1 + max_increase)."""
    limit = f"+{_pct(max_increase)}"
    if baseline is None or current is None:
        return Finding(name, _usd(baseline), _usd(current), "-", limit, Verdict.SKIP, "not priced on both sides")
    failed = current > baseline * (1 + max_increase)
    change = "-" if baseline == 0 else f"{(current / baseline - 1) * 100:+.2f}%"
    if baseline == 0 and current > 0:
        failed, change = True, "from zero"
    return Finding(name, _usd(baseline), _usd(current), change, limit, Verdict.FAIL if failed else Verdict.PASS)


def error_rate_check(current_errors: int, current_requests: int, max_rate: Decimal) -> Finding:
    """Absolute: fail when the current runs' errors / requests exceeds `max_rate` (a fraction)."""
    value = Decimal(current_errors) / current_requests if current_requests else Decimal(1)
    verdict = Verdict.FAIL if value > max_rate else Verdict.PASS
    detail = f"{current_errors} of {current_requests} requests failed"
    return Finding("error rate", "-", _pct(value), "-", f"<= {_pct(max_rate)}", verdict, detail)


def overall(findings: Sequence[Finding]) -> Verdict:
    return Verdict.FAIL if any(f.verdict is Verdict.FAIL for f in findings) else Verdict.PASS


def _pct(fraction: Decimal) -> str:
    return f"{(fraction * 100).normalize():f}%"


def _usd(amount: Decimal | None) -> str:
    return "-" if amount is None else f"${amount:f}"
