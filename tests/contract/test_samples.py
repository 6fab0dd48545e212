"""The compute sample store (migration 0018) on SQLite and PostgreSQL: samples round-trip in time
order, a collector's status is upserted, old samples are pruned."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from costwarden.domain.collector_status import CollectorStatus
from costwarden.domain.compute_sample import GpuProcess, GpuSample, ProcessSample
from costwarden.ports import SampleStore
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
        ProcessSample(30.0, "iris", 4242, 2.5, 301 << 20, 9),
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
