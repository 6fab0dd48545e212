"""A run's summary: percentiles in ms, errors by kind, and the cost basis chosen in order:
the gateway's metered cost, else the config's prices, else the hardware's hourly price."""

from __future__ import annotations

from decimal import Decimal

from costwarden.bench.exchange import Sample
from costwarden.bench.loadgen import Load
from costwarden.bench.markdown import render
from costwarden.bench.summary import summarize_run
from costwarden.domain.hardware import HardwareProfile
from costwarden.domain.pricing import PriceSheet
from costwarden.domain.slo import parse_slo
from costwarden.domain.usage import Usage
from tests.unit.bench.sample import results

LOAD = Load(10.0, concurrency=1)
SHEET = PriceSheet(input_per_1m=Decimal("1"), output_per_1m=Decimal("2"))
BOX = HardwareProfile("box", Decimal("3.60"))


def sample(latency: float, error: str | None = None, metered: str | None = None) -> Sample:
    usage = Usage(input_tokens=100, output_tokens=50) if error is None else Usage()
    return Sample(0.0, 0.0, latency, 200 if error is None else 500, error, usage,
                  metered_usd=Decimal(metered) if metered else None)  # fmt: skip


def test_percentiles_errors_and_prices() -> None:
    samples = [sample(0.001 * i) for i in range(1, 101)] + [sample(0.5, "http_500")]
    run = summarize_run("run", LOAD, samples, 10.0, SHEET, BOX, parse_slo("p99<=99ms, errors<=1%"))
    assert run.latency_ms is not None and run.latency_ms.p50 == 50.0 and run.latency_ms.max == 100.0
    assert run.errors == {"http_500": 1} and run.ok == 100 and run.throughput_rps == 10.0
    # 100 x (100 x $1 + 50 x $2) / 1M = $0.02; per 1k requests $0.2; per 1M tokens (15,000 of them) $1.333...
    assert run.cost is not None and run.cost.basis == "prices" and run.cost.total_usd == Decimal("0.02")
    assert run.cost.per_1k_requests == Decimal("0.2") and run.cost.per_1m_tokens == Decimal("1.333333333")
    assert run.slo_violations == []
    assert "| run | c=1 | 100 | 0.99% |" in render(results([run]))


def test_the_gateways_metered_cost_wins_and_hardware_is_the_last_resort() -> None:
    metered = summarize_run("run", LOAD, [sample(0.01, metered="0.000000102")] * 4, 2.0, SHEET, BOX)
    assert metered.cost is not None and metered.cost.basis == "gateway"
    assert metered.metered_usd == Decimal("0.000000408") == metered.cost.total_usd
    by_hour = summarize_run("run", LOAD, [sample(0.01)] * 20, 2.0, None, BOX)
    # $3.60/h at 10 req/s: $0.0001 a request, $0.1 per 1k.
    assert by_hour.cost is not None and by_hour.cost.basis == "hardware box $3.60/h"
    assert by_hour.cost.per_1k_requests == Decimal("0.1")
    assert summarize_run("run", LOAD, [sample(0.01)], 1.0).cost is None
