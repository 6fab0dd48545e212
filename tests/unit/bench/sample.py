"""Results files for unit tests of the CLI: built through the same models `bench` writes."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from costwarden.bench.results import Cost, HardwareInfo, Percentiles, Results, Run, TargetInfo, save


def run(p99: float, per_1k: str = "0.02", ok: int = 100, errors: int = 0, rps: float = 50.0) -> Run:
    latency = Percentiles(p50=p99 / 2, p90=p99 * 0.8, p95=p99 * 0.9, p99=p99, max=p99 * 1.2, mean=p99 / 2)
    total = Decimal(per_1k) * ok / 1000
    return Run(
        label="run", mode="closed", concurrency=1, duration_s=ok / rps, requests=ok + errors, ok=ok,
        errors={"http_500": errors} if errors else {}, error_rate=errors / (ok + errors), throughput_rps=rps,
        tokens_per_s=0.0, input_tokens=0, output_tokens=0, items=ok, latency_ms=latency, raw_percentiles_ms={},
        cost=Cost(basis="gateway", total_usd=total, per_1k_requests=Decimal(per_1k)),
    )  # fmt: skip


def results(runs: list[Run], deployment: str = "clf", protocol: str = "v2", hw: HardwareInfo | None = None) -> Results:
    return Results(
        costwarden_version="0.1.0",
        created_at="2026-12-07T00:00:00+00:00",
        target=TargetInfo(
            url="http://x",
            protocol="v2" if protocol == "v2" else "openai",
            deployment=deployment,
            stream=False,
            via_gateway=True,
        ),
        parameters={},
        machine={},
        hardware=hw,
        runs=runs,
    )


def write(path: Path, runs: list[Run], deployment: str = "clf", protocol: str = "v2") -> Path:
    save(results(runs, deployment, protocol), path)
    return path
