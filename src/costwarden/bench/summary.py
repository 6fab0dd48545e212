"""Turn one load's samples into a results `Run`: percentiles, throughput, errors by kind, cost."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from decimal import Decimal

from costwarden.bench.exchange import Sample
from costwarden.bench.loadgen import Load
from costwarden.bench.results import Cost, Percentiles, Run
from costwarden.domain.hardware import HardwareProfile
from costwarden.domain.money import ZERO, quantize
from costwarden.domain.percentiles import raw_percentiles, summarize
from costwarden.domain.pricing import PriceSheet, price
from costwarden.domain.slo import Slo
from costwarden.domain.unit_cost import UnitCost, from_hourly, from_total, rate


def _ms(values: Sequence[float]) -> Percentiles | None:
    summary = summarize([v * 1000 for v in values])
    return None if summary is None else Percentiles(**summary.as_dict())


def cost_of(
    ok: Sequence[Sample], throughput: float, tokens_per_s: float, sheet: PriceSheet | None, hw: HardwareProfile | None
) -> Cost | None:
    """The gateway's metered cost when every reply carried one, else the config's prices, else the
    hardware's hourly price at the measured throughput."""
    if not ok:
        return None
    tokens = sum(s.usage.total_tokens for s in ok)
    unit: UnitCost
    if all(s.metered_usd is not None for s in ok):
        total = sum((s.metered_usd for s in ok if s.metered_usd is not None), ZERO)
        unit = from_total(total, len(ok), tokens, "gateway")
    elif sheet is not None and sheet.basis != "free":
        total = sum((price(sheet, s.usage) for s in ok), ZERO)
        unit = from_total(total, len(ok), tokens, "prices")
    elif hw is not None and throughput > 0:
        unit = from_hourly(hw.hourly_usd, rate(throughput), rate(tokens_per_s) if tokens else None)
        unit = UnitCost(unit.per_1k_requests, unit.per_1m_tokens, f"hardware {hw.name} ${hw.hourly_usd}/h")
        total = quantize(unit.per_1k_requests * len(ok) / 1000)
    else:
        return None
    return Cost(
        basis=unit.basis, total_usd=total, per_1k_requests=unit.per_1k_requests, per_1m_tokens=unit.per_1m_tokens
    )


def summarize_run(
    label: str,
    load: Load,
    samples: Sequence[Sample],
    wall_s: float,
    sheet: PriceSheet | None = None,
    hardware: HardwareProfile | None = None,
    slo: Slo | None = None,
) -> Run:
    ok = [s for s in samples if s.ok]
    wall = max(wall_s, 1e-9)
    tokens = sum(s.usage.total_tokens for s in ok)
    throughput = len(ok) / wall
    metered = [s.metered_usd for s in samples if s.metered_usd is not None]
    run = Run(
        label=label,
        mode="open" if load.rate is not None else "closed",
        arrival=load.arrival if load.rate is not None else None,
        offered_rate=load.rate,
        concurrency=load.concurrency,
        duration_s=round(wall, 6),
        requests=len(samples),
        ok=len(ok),
        errors=dict(sorted(Counter(s.error for s in samples if s.error is not None).items())),
        error_rate=(len(samples) - len(ok)) / len(samples) if samples else 1.0,
        throughput_rps=round(throughput, 6),
        tokens_per_s=round(tokens / wall, 6),
        input_tokens=sum(s.usage.input_tokens for s in ok),
        output_tokens=sum(s.usage.output_tokens for s in ok),
        items=sum(s.usage.items for s in ok),
        latency_ms=_ms([s.latency_s for s in ok]),
        ttft_ms=_ms([s.ttft_s for s in ok if s.ttft_s is not None]),
        tpot_ms=_ms([s.tpot_s for s in ok if s.tpot_s is not None]),
        raw_percentiles_ms=raw_percentiles([s.latency_s * 1000 for s in ok]),
        generator_late_ms=_ms([s.late_s for s in samples]) if load.rate is not None else None,
        cost=cost_of(ok, throughput, tokens / wall, sheet, hardware),
        metered_usd=quantize(sum(metered, Decimal(0))) if metered else None,
    )
    if slo is None:
        return run
    return run.model_copy(update={"slo_violations": slo.violations(run.stats())})
