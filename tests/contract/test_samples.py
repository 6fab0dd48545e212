"""The compute sample store (migrations 0018, 0019) on SQLite and PostgreSQL: samples round-trip in
time order, a collector's status is upserted, old samples are pruned; samples fold into minute rows
that answer allocation exactly as the raw samples do."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from costwarden.config import parse_config
from costwarden.config.models import Config
from costwarden.domain.allocation import Allocation, allocate
from costwarden.domain.allocation_input import IntervalGatherer
from costwarden.domain.collector_status import CollectorStatus
from costwarden.domain.compute_sample import PROMETHEUS_GPU, GpuProcess, GpuSample, ProcessSample
from costwarden.ports import SampleStore
from costwarden.services.allocation import provisions
from costwarden.services.compute import ComputeSampler, gaps_of, measured_window
from costwarden.storage.factory import open_samples, open_store


@pytest.fixture(params=["sqlite", "postgres"])
async def samples(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SampleStore]:
    sqlite = f"sqlite:///{tmp_path / 'ledger.db'}"
    url = sqlite if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    ledger = open_store(url)
    await ledger.open()  # its migrations create the sample tables
    store = open_samples(url)
    yield store
    await store.close()
    await ledger.close()


async def test_samples_round_trip_and_prune(samples: SampleStore) -> None:
    processes = (GpuProcess(435, 3 << 30, 12.0), GpuProcess(436, 1 << 30))
    gpu = GpuSample(20.5, 0, 37.0, 5 << 30, 155_000, 3_353_247, processes)
    written: list[ProcessSample | GpuSample] = [
        ProcessSample(10.0, "iris", 4242, 1.25, 300 << 20, 9),
        gpu,
        ProcessSample(30.0, "iris", 4242, 2.5, 301 << 20, 9, (4250, 4251)),  # with its workers' pids
    ]
    assert await samples.write_samples(list(reversed(written))) == 3
    assert await samples.samples(0, 100) == written
    assert await samples.samples(15, 25) == [gpu]
    assert await samples.prune_samples(25) == 2
    assert await samples.samples(0, 100) == [written[-1]]


async def test_status_is_upserted(samples: SampleStore) -> None:
    await samples.save_status([CollectorStatus("nvml", False, None, 0, "NVML not available: no driver")], 1.0)
    await samples.save_status([CollectorStatus("process:iris", True, 5.0, 3, None)], 5.0)
    await samples.save_status([CollectorStatus("process:iris", True, 9.0, 4, None)], 9.0)
    assert await samples.statuses() == [
        CollectorStatus("nvml", False, None, 0, "NVML not available: no driver"),
        CollectorStatus("process:iris", True, 9.0, 4, None),
    ]


ROLLUP_CONFIG = """\
hardware:
  - {name: box, vcpus: 4, memory_gib: 16, hourly_usd: 0.8}
  - {name: h200, accelerator: NVIDIA H200, accelerator_count: 1, vcpus: 16, memory_gib: 128, hourly_usd: 3.72}
deployments:
  - {name: iris, protocol: v2, upstream: "http://127.0.0.1:9000", compute: {profile: box}}
  - {name: model-a, protocol: v2, upstream: "http://127.0.0.1:9001", compute: {profile: h200}}
  - {name: model-b, protocol: v2, upstream: "http://127.0.0.1:9002", compute: {profile: h200}}
  - {name: fraud, protocol: v2, upstream: "http://127.0.0.1:9003", compute: {profile: h200, replicas: 2}}
compute:
  collectors:
    - {type: process, deployment: iris, interval_seconds: 5}
    - {type: process, deployment: model-a, interval_seconds: 5}
    - {type: process, deployment: model-b, interval_seconds: 5}
    - {type: nvml, interval_seconds: 1}
    - {type: prometheus, url: "http://127.0.0.1:9090", interval_seconds: 15}
"""
BASE = 28_333_333 * 60  # a whole minute
SPAN = 10 * 60


def rollup_samples(base: int = BASE) -> list[ProcessSample | GpuSample]:
    """Ten minutes of every source, off the minute edges (pairs straddle them), with a 40 s hole in
    iris's samples (a gap longer than its limit: not counted, in raw samples or minute rows)."""
    rng = random.Random(8)
    out: list[ProcessSample | GpuSample] = []
    cpu = {4242: 0.0, 435: 0.0, 436: 0.0, 0: 0.0}
    for i in range(SPAN // 5):
        at = base + 2.5 + 5 * i
        for pid, dep in ((4242, "iris"), (435, "model-a"), (436, "model-b")):
            cpu[pid] += rng.uniform(0.0, 4.0)
            if not (pid == 4242 and 200 < at - base < 240):
                out.append(ProcessSample(at, dep, pid, cpu[pid], rng.randrange(1 << 28, 1 << 30), 8))
    for i in range(SPAN // 2):
        procs = (GpuProcess(435, 3 << 30, rng.uniform(0, 60)), GpuProcess(436, 1 << 30, rng.uniform(0, 40)))
        out.append(GpuSample(base + 1.25 + 2 * i, 0, rng.uniform(0, 100), 5 << 30, 155_000, 1000 * i, procs))
    for i in range(SPAN // 15):
        at = base + 7.0 + 15 * i
        cpu[0] += rng.uniform(0.0, 30.0)
        out.append(GpuSample(at, PROMETHEUS_GPU, rng.uniform(0, 100), 7 << 30, 0, None, (), "fraud"))
        out.append(ProcessSample(at, "fraud", 0, cpu[0], 2 << 30, 0))
    return out


def allocated(config: Config, measured: dict[str, tuple[float, str]], start: float, end: float) -> Allocation:
    gatherer = IntervalGatherer(start, end, ("team",), provisions(config)[0])
    for n, dep in enumerate(("iris", "model-a", "model-b", "fraud") * 3):
        gatherer.add_interval(dep, start + 20 * n, start + 20 * n + 45, (f"team-{n % 2}",), 10)
    return allocate(gatherer.usages(measured), 1)


async def test_minute_rows_give_the_raw_samples_allocation(samples: SampleStore) -> None:
    """A window read from raw samples, from minute rows, and from both (raw pruned halfway) gives
    the same measured busy time per deployment and the same allocation, to the nano-dollar."""
    config = parse_config(ROLLUP_CONFIG)
    await samples.write_samples(rollup_samples())
    sampler = ComputeSampler([], samples, 30 * 86400.0, gaps_of(config), 3600.0)
    start, end = BASE + 60, BASE + SPAN - 60
    from_raw = await measured_window(config, samples, start, end)
    assert set(from_raw) == {"iris", "model-a", "model-b", "fraud"}
    assert await samples.minutes(BASE, BASE + SPAN) == []

    assert await sampler.fold(BASE + SPAN - 30) > 0  # minutes not yet closed are left for later
    folded = {row.minute for row in await samples.minutes(BASE, BASE + SPAN)}
    assert max(folded) < BASE + SPAN - 120
    written = await sampler.fold(BASE + SPAN + 3600)
    assert {row.minute for row in await samples.minutes(BASE, BASE + SPAN)} == set(range(BASE, BASE + SPAN, 60))
    sampler._folded = None  # a restart folds nothing twice: it starts after the last minute row
    assert await sampler.fold(BASE + SPAN + 3600) == 0 and written > 0

    await samples.prune_samples(BASE + SPAN / 2)
    mixed = await measured_window(config, samples, start, end)
    await samples.prune_samples(BASE + SPAN + 1)
    assert await samples.oldest_sample() is None
    from_minutes = await measured_window(config, samples, start, end)
    for measured in (mixed, from_minutes):
        assert {d: basis for d, (_, basis) in measured.items()} == {d: basis for d, (_, basis) in from_raw.items()}
        assert {d: pytest.approx(s, rel=1e-12) for d, (s, _) in measured.items()} == {
            d: s for d, (s, _) in from_raw.items()
        }
        got, want = allocated(config, measured, start, end), allocated(config, from_raw, start, end)
        assert [(r.group, r.used_usd, r.idle_usd) for r in got.rows] == [
            (r.group, r.used_usd, r.idle_usd) for r in want.rows
        ]
        assert got.used_usd == want.used_usd > 0


async def test_minute_rows_count_samples_and_are_pruned_after_their_retention(samples: SampleStore) -> None:
    """Minute rows count each series' samples and keep its peak; a day without samples before them is
    skipped, not folded minute by minute; raw samples and minute rows go after their retentions."""
    config = parse_config(ROLLUP_CONFIG)
    base = BASE + 86400  # its own day: the PostgreSQL database is shared by this module's tests
    written = rollup_samples(base)
    await samples.write_samples([ProcessSample(base - 86400 * 20, "iris", 4242, 0.0, 1, 1), *written])
    sampler = ComputeSampler([], samples, 300.0, gaps_of(config), 60.0)
    await sampler.fold(base + SPAN + 3600)
    rows = await samples.minutes(base, base + SPAN)
    iris = [r.total for r in rows if r.total.source == "process" and r.total.deployment == "iris"]
    mine = [s for s in written if isinstance(s, ProcessSample) and s.pid == 4242]
    assert sum(t.samples for t in iris) == len(mine)
    assert max(t.peak_bytes for t in iris) == max(s.rss_bytes for s in mine)
    await sampler.prune(base + SPAN + 60)  # raw kept 60 s, minute rows 300 s
    assert await samples.oldest_sample() is None
    kept = {r.minute for r in await samples.minutes(base, base + SPAN)}
    assert kept == set(range(base + SPAN - 240, base + SPAN, 60))
