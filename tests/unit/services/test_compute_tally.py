"""The compute cost metrics' running totals (services.compute_tally) over a real SQLite ledger: each
tick adds the allocation of [mark, now - lag) per deployment and profile; the totals over several
ticks equal the provisioned cost, the idle cost (computed here from the records) and GPU-seconds of
the whole span, exactly; a replica that does not lead moves its mark on without counting; a failed
read keeps the mark, so the next tick accounts the interval."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

import pytest

from costwarden.collectors.prometheus import QueryFailed
from costwarden.config.models import Config
from costwarden.domain.record import UsageRecord
from costwarden.domain.replicas import grid
from costwarden.observability.compute import ComputeMetrics
from costwarden.services import replicas
from costwarden.services.compute_tally import ComputeTally, ComputeTotals
from costwarden.storage.sqlite import SQLiteStore
from tests.unit.storage.sample import record

T0 = 1_800_000_000.0
HOURLY = Decimal("7.2")  # per replica


def config(ledger: Path) -> Config:
    return Config.model_validate({
        "hardware": [{"name": "l4", "vcpus": 4, "memory_gib": 16, "hourly_usd": str(HOURLY),
                      "accelerator": "NVIDIA L4", "accelerator_count": 1}],
        "deployments": [
            {"name": "fraud", "protocol": "v2", "upstream": "http://127.0.0.1:9", "timeouts": {"read": 2},
             "compute": {"profile": "l4", "replicas": 2}},
            {"name": "chat", "protocol": "openai", "upstream": "http://127.0.0.1:9"},
        ],
        "storage": {"ledger": f"sqlite:///{ledger}", "flush_interval_ms": 500},
    })  # fmt: skip


def requests() -> list[UsageRecord]:
    """Non-overlapping requests on `fraud` (one replica busy at a time), one on `chat` (no compute)."""
    out = [
        record(f"r{i}", deployment="fraud", started_at=T0 + 10 * i, ended_at=T0 + 10 * i + 1.5, upstream_ms=1500.0)
        for i in range(12)
    ]
    return [*out, record("c", deployment="chat", started_at=T0 + 3, ended_at=T0 + 4, upstream_ms=1000.0)]


class Lease:
    def __init__(self) -> None:
        self.leading = True

    async def lead(self, now: float) -> bool:
        return self.leading


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Path]:
    path = tmp_path / "ledger.db"
    store = SQLiteStore(str(path))
    await store.open()
    await store.write(requests())
    await store.close()
    yield path


def _usd(seconds: Decimal, hourly: Decimal) -> Decimal:
    return (hourly * seconds / 3600).quantize(Decimal("0.000000001"), rounding=ROUND_FLOOR)


async def test_ticks_add_up_to_the_allocation_of_the_whole_span(ledger: Path) -> None:
    lease = Lease()
    tally = ComputeTally(config(ledger), lease.lead, lambda: None, 15.0, T0)
    assert tally.lag_s == 2 + 1.0 + 1.0  # read timeout, two flushes, a second
    tally.mark = T0
    for now in (T0 + 40 + tally.lag_s, T0 + 80 + tally.lag_s, T0 + 120 + tally.lag_s):
        await tally.tick(now)
    assert tally.mark == T0 + 120
    totals = tally.totals[("fraud", "l4")]
    provisioned = [_usd(Decimal(40), 2 * HOURLY)] * 3  # each tick floors its own part to a nano-dollar
    used = [_usd(Decimal("6"), HOURLY)] * 3  # four requests of 1.5 s in each 40 s
    assert totals.compute_usd == sum(provisioned, Decimal(0)) == Decimal("0.48")
    assert totals.idle_usd == sum(provisioned, Decimal(0)) - sum(used, Decimal(0))
    assert totals.gpu_seconds == 2 * 120  # one L4 per replica, two replicas
    assert set(tally.totals) == {("fraud", "l4")}  # `chat` has no compute


async def test_a_follower_counts_nothing_and_a_failed_read_keeps_the_mark(ledger: Path, tmp_path: Path) -> None:
    lease = Lease()
    lease.leading = False
    tally = ComputeTally(config(ledger), lease.lead, lambda: None, 15.0, T0)
    tally.mark = T0
    await tally.tick(T0 + 40 + tally.lag_s)
    assert tally.mark == T0 + 40 and tally.totals[("fraud", "l4")].compute_usd == 0
    lease.leading = True
    broken = ComputeTally(config(tmp_path / "missing" / "ledger.db"), lease.lead, lambda: None, 15.0, T0)
    broken.mark = T0
    with pytest.raises(Exception, match="unable to open"):
        await broken.tick(T0 + 40 + broken.lag_s)
    assert broken.mark == T0 and broken.totals[("fraud", "l4")].compute_usd == 0


# Replicas counted by Prometheus: the range query's answer over each tick's [mark, end), here from a
# fake `query_range` (1 replica before T0 + 20, 3 after, no count at T0 + 60); the math is real.
STEP = 10.0


def counted_config(ledger: Path) -> Config:
    raw = config(ledger).model_dump(mode="json", exclude_unset=True)
    raw["deployments"][0]["compute"]["replicas"] = {"prometheus": 'kube_deployment_status_replicas{deployment="fraud"}',
                                                    "step_seconds": STEP}  # fmt: skip
    raw["compute"] = {"collectors": [{"type": "prometheus", "url": "http://127.0.0.1:9"}]}
    return Config.model_validate(raw)


class Prometheus:
    def __init__(self) -> None:
        self.down = False
        self.asked: list[tuple[float, float, float]] = []

    def query_range(
        self, base: str, promql: str, start: float, end: float, step: float, timeout: float
    ) -> list[tuple[float, str]]:
        self.asked.append((start, end, step))
        if self.down:
            raise QueryFailed("connection refused")
        return [(t, "1" if t < T0 + 20 else "3") for t in grid(start, end, step) if t != T0 + 60]


async def test_prometheus_counted_replicas_are_tallied_gaps_left_out_and_retried_when_down(
    ledger: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prom = Prometheus()
    monkeypatch.setattr(replicas, "query_range", prom.query_range)
    tally = ComputeTally(counted_config(ledger), Lease().lead, lambda: None, 15.0, T0)
    assert tally.active and tally.marks == {"fraud": round(tally.mark, 3)}
    tally.marks["fraud"] = T0
    tally.mark = T0
    await tally.tick(T0 + 40 + tally.lag_s)  # 1, 1, 3, 3 replicas over 10 s each
    prom.down = True
    await tally.tick(T0 + 80 + tally.lag_s)  # nothing counted, the mark stays
    assert tally.marks["fraud"] == T0 + 40
    prom.down = False
    await tally.tick(T0 + 120 + tally.lag_s)  # [T0 + 40, T0 + 120) at once: 7 steps of 3, one gap
    assert [a[:2] for a in prom.asked] == [(T0, T0 + 40), (T0 + 40, T0 + 80), (T0 + 40, T0 + 120)]
    assert tally.marks["fraud"] == T0 + 120
    totals = tally.totals[("fraud", "l4")]
    replica_s = [Decimal(1 * 20 + 3 * 20), Decimal(3 * 70)]
    assert totals.compute_usd == _usd(replica_s[0], HOURLY) + _usd(replica_s[1], HOURLY)
    assert totals.idle_usd == totals.compute_usd - _usd(Decimal(6), HOURLY) - _usd(Decimal(12), HOURLY)
    assert totals.gpu_seconds == sum(replica_s)  # one L4 per replica
    assert totals.uncounted_seconds == STEP  # the gap at T0 + 60
    # costwarden_replica_hourly_cost_usd: the latest count Prometheus gave x the price (fixed replicas:
    # from config); the follower below, which asks nothing, exports none for it.
    assert totals.replicas == 3
    metrics = ComputeMetrics(counted_config(ledger), list, lambda: tally.totals)
    hourly = next(m for m in metrics.collect() if m.name == "costwarden_replica_hourly_cost_usd")
    assert [(s.labels, s.value) for s in hourly.samples] == [({"deployment": "fraud", "profile": "l4"}, 3 * 7.2)]


async def test_a_follower_moves_the_prometheus_marks_without_asking(
    ledger: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prom = Prometheus()
    monkeypatch.setattr(replicas, "query_range", prom.query_range)
    lease = Lease()
    lease.leading = False
    tally = ComputeTally(counted_config(ledger), lease.lead, lambda: None, 15.0, T0)
    await tally.tick(T0 + 40)
    assert prom.asked == [] and tally.marks["fraud"] == round(T0 + 40 - tally.lag_s, 3)
    assert tally.totals[("fraud", "l4")] == ComputeTotals()
