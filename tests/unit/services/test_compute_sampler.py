"""The compute sampler with a real SQLite ledger: samples stored, a collector that fails or a source
that is missing shows in the saved status and never stops the others; measured busy time per deployment."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from costwarden.config import parse_config
from costwarden.domain.collector_status import CollectorStatus
from costwarden.domain.compute_sample import GpuSample, ProcessSample
from costwarden.ports import ComputeCollector
from costwarden.services.compute import ComputeSampler, measured_busy
from costwarden.storage.factory import open_samples, open_store


class Counting:
    """A collector stand-in (unit test): CPU seconds that grow by 0.5 per call, or an error."""

    def __init__(self, name: str, fail: bool = False) -> None:
        self.status = CollectorStatus(name)
        self.fail = fail
        self.calls = 0
        self.sampled = threading.Event()

    def start(self) -> bool:
        self.status.running = not self.fail
        if self.fail:
            self.status.last_error = "NVML not available: NVML Shared Library Not Found"
        return not self.fail

    def sample(self, now: float) -> Sequence[ProcessSample | GpuSample]:
        self.calls += 1
        self.sampled.set()
        if self.calls == 3:
            raise OSError("the process table could not be read")
        return [ProcessSample(now, "iris", 42, 0.5 * self.calls, 1 << 20, 4)]

    def stop(self) -> None:
        self.status.running = False


CONFIG = """\
hardware: [{name: box, vcpus: 2, memory_gib: 4, hourly_usd: 1}]
deployments:
  - {name: iris, protocol: v2, upstream: "http://127.0.0.1:9", compute: {profile: box}}
compute: {collectors: [{type: process, deployment: iris, interval_seconds: 1}]}
"""


async def test_samples_status_and_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = open_store(url)
    await ledger.open()
    good, missing = Counting("process:iris"), Counting("nvml", fail=True)
    collectors: list[tuple[ComputeCollector, float]] = [(good, 3600.0), (missing, 3600.0)]
    sampler = ComputeSampler(collectors, open_samples(url), 86400.0)
    await sampler.start()
    assert await asyncio.to_thread(good.sampled.wait, 10)  # the loop's own first tick
    while good.status.samples < 1:  # stored  # noqa: ASYNC110 - a status field, nothing to wait on
        await asyncio.sleep(0.01)
    for _ in range(3):
        await sampler.tick(good)
    store = open_samples(url)
    saved = {s.name: s for s in await store.statuses()}
    assert saved["nvml"].running is False and (saved["nvml"].last_error or "").startswith("NVML not available")
    assert saved["process:iris"].last_error == "OSError: the process table could not be read"
    assert saved["process:iris"].samples == 3  # the loop's first tick + three, the third failing: nothing stored
    samples = await store.samples(0, 1e12)
    assert [s.cpu_seconds for s in samples if isinstance(s, ProcessSample)] == [0.5, 1.0, 2.0]
    await sampler.stop()
    assert (await store.statuses())[1].running is False
    busy = measured_busy(parse_config(CONFIG), samples, 0, 1e12)
    assert busy["iris"][0] == pytest.approx(0.75)  # 1.5 CPU seconds over the profile's 2 vCPUs
    await store.close()
    await ledger.close()
