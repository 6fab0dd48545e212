"""Budget forecasts: project a window's end-of-window spend from its burn rate, and say when the
limit will be reached at that rate. Money is USD (Decimal); times are Unix seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from costwarden.domain.money import ZERO, quantize

SECONDS_PER_HOUR = Decimal(3600)


class ForecastError(ValueError):
    """A forecast asked for an empty window, or for a moment outside it."""


@dataclass(frozen=True, slots=True)
class Forecast:
    """`projected_spend`: USD at the window's end at `rate_per_hour` (USD per hour).
    `will_exceed`: the projection passes the limit and enough of the window has elapsed to trust
    it. `expected_exceed_at`: when spend reaches the limit at this rate (Unix seconds), `now` if
    it already has, None if not before the window ends."""

    projected_spend: Decimal
    will_exceed: bool
    expected_exceed_at: float | None
    rate_per_hour: Decimal
    confident: bool


def _seconds(value: float) -> Decimal:
    return Decimal(repr(value))


def burn_rate(spent: Decimal, seconds: float) -> Decimal:
    """Spend per hour (USD/h) of `spent` USD over `seconds`; zero over an empty span."""
    if seconds <= 0:
        return ZERO
    return spent * SECONDS_PER_HOUR / _seconds(seconds)


def forecast(
    spent: Decimal,
    limit: Decimal,
    window_start: float,
    window_end: float,
    now: float,
    rate_per_hour: Decimal | None = None,
    min_elapsed_fraction: float = 0.1,
) -> Forecast:
    """Project `spent` (USD, settled so far in [window_start, now)) to `window_end`.

    The rate is the window's average burn unless `rate_per_hour` gives a recent one (e.g. the last
    hour's). Before `min_elapsed_fraction` of the window has passed the projection is reported but
    not trusted (`confident` False), so a busy first minute of the month does not alert.
    """
    if window_end <= window_start:
        raise ForecastError(f"empty window [{window_start}, {window_end})")
    if not window_start <= now <= window_end:
        raise ForecastError(f"{now} lies outside the window [{window_start}, {window_end}]")
    elapsed = now - window_start
    rate = burn_rate(spent, elapsed) if rate_per_hour is None else max(ZERO, rate_per_hour)
    remaining = _seconds(window_end - now)
    projected = quantize(spent + rate * remaining / SECONDS_PER_HOUR)
    confident = elapsed >= min_elapsed_fraction * (window_end - window_start)
    exceed_at: float | None
    if spent >= limit:
        exceed_at = now
    elif rate > ZERO:
        at = now + float((limit - spent) * SECONDS_PER_HOUR / rate)
        exceed_at = at if at < window_end else None
    else:
        exceed_at = None
    return Forecast(projected, confident and projected > limit, exceed_at, quantize(rate), confident)


def headroom(limit: Decimal, projected: Decimal) -> Decimal:
    """How far under (positive) or over (negative) the limit the projection lands, as a fraction
    of the limit."""
    return (limit - projected) / limit if limit > ZERO else ZERO
