"""A plot of cost per 1k requests against throughput, one line per hardware profile, as plain SVG
(no plotting library needed): each bench run is a point, hollow when it missed the SLO."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from html import escape

from costwarden.bench.recommend import Candidate
from costwarden.domain.slo import Slo
from costwarden.domain.unit_cost import from_hourly, rate

W, H, LEFT, RIGHT, TOP, BOTTOM = 720, 420, 80, 200, 40, 50
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


def points(c: Candidate, slo: Slo) -> list[tuple[float, float, bool]]:
    """(requests/s, $ per 1k requests, met the SLO) for each run of the candidate with throughput."""
    found: list[tuple[float, float, bool]] = []
    for run in c.results.runs:
        if run.throughput_rps <= 0:
            continue
        cost = from_hourly(c.profile.hourly_usd, rate(run.throughput_rps), None).per_1k_requests
        found.append((run.throughput_rps, float(cost), run.ok > 0 and slo.met(run.stats())))
    return sorted(found)


def render(candidates: list[Candidate], slo: Slo, required_rate: float | None) -> str:
    series = [(c, points(c, slo)) for c in candidates]
    xs = [x for _, ps in series for x, _, _ in ps] + ([required_rate] if required_rate else [])
    ys = [y for _, ps in series for _, y, _ in ps]
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    x_axis, y_axis = Axis.over(xs), Axis.over(ys)

    def px(x: float) -> float:
        return LEFT + x_axis.fraction(x) * plot_w

    def py(y: float) -> float:
        return TOP + plot_h - y_axis.fraction(y) * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="14">Cost per 1k requests vs throughput (SLO {escape(slo.text)})</text>',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" stroke="black"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="black"/>',
        f'<text x="{LEFT + plot_w / 2}" y="{H - 12}" text-anchor="middle">requests/s{x_axis.note}</text>',
        f'<text x="16" y="{TOP + plot_h / 2}" transform="rotate(-90 16 {TOP + plot_h / 2})" '
        f'text-anchor="middle">USD per 1k requests{y_axis.note}</text>',
    ]
    for xv, yv in zip(x_axis.ticks(), y_axis.ticks(), strict=True):
        out.append(f'<text x="{px(xv):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{xv:.3g}</text>')
        out.append(f'<text x="{LEFT - 6}" y="{py(yv) + 4:.1f}" text-anchor="end">{_usd(yv)}</text>')
    if required_rate:
        x = px(required_rate)
        dashed = 'stroke="grey" stroke-dasharray="4"'
        out.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + plot_h}" {dashed}/>')
    for n, (c, ps) in enumerate(series):
        colour = COLOURS[n % len(COLOURS)]
        if len(ps) > 1:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y, _ in ps)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}"/>')
        for x, y, met in ps:
            fill = colour if met else "white"
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{fill}" stroke="{colour}"/>')
        ly = TOP + 16 * n
        out.append(f'<rect x="{W - RIGHT + 12}" y="{ly}" width="10" height="10" fill="{colour}"/>')
        label = f"{c.profile.name} ${c.profile.hourly_usd}/h"
        out.append(f'<text x="{W - RIGHT + 28}" y="{ly + 9}">{escape(label)}</text>')
    out.append(f'<text x="{W - RIGHT + 12}" y="{TOP + 16 * len(series) + 14}">hollow: missed the SLO</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


@dataclass(frozen=True, slots=True)
class Axis:
    """Linear from 0, or logarithmic when the values span more than a factor of 30."""

    low: float
    high: float
    log: bool

    @classmethod
    def over(cls, values: list[float]) -> Axis:
        positive = [v for v in values if v > 0] or [1.0]
        low, high = min(positive), max(positive)
        if high / low > 30:
            return cls(math.log10(low) - 0.1, math.log10(high) + 0.1, True)
        return cls(0.0, high * 1.1, False)

    @property
    def note(self) -> str:
        return " (log scale)" if self.log else ""

    def fraction(self, value: float) -> float:
        at = math.log10(max(value, 1e-12)) if self.log else value
        return (at - self.low) / (self.high - self.low)

    def ticks(self) -> list[float]:
        steps = [self.low + (self.high - self.low) * i / 4 for i in range(5)]
        return [10**s for s in steps] if self.log else steps


def _usd(value: float) -> str:
    return f"${Decimal(repr(value)):.3g}" if value < 1 else f"${value:.2f}"
