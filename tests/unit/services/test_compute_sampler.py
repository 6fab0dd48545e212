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
from costwarden.domain.compute_sample import GpuSample, ProcessSample, cpu_busy
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


class SteppedClock:
    """The sampler's clock (unit test): wall and monotonic time that advance together until the wall
    clock is stepped back."""

    def __init__(self) -> None:
        self.wall, self.mono = 1_000.0, 0.0

    def __call__(self) -> tuple[float, float]:
        return self.wall, self.mono

    def advance(self, seconds: float, step_back: float = 0.0) -> None:
        self.mono += seconds
        self.wall += seconds - step_back


class HalfCore:
    """A process that keeps half a core busy, whatever the wall clock says: CPU seconds = 0.5 x
    monotonic time."""

    def __init__(self, clock: SteppedClock) -> None:
        self.status = CollectorStatus("process:iris")
        self.clock = clock

    def start(self) -> bool:
        self.status.running = True
        return True

    def sample(self, now: float) -> Sequence[ProcessSample | GpuSample]:
        return [ProcessSample(now, "iris", 42, 0.5 * self.clock.mono, 1 << 20, 4)]

    def stop(self) -> None:
        self.status.running = False


async def test_a_clock_that_jumps_back_leaves_a_gap_and_says_so(tmp_path: Path) -> None:
    """The wall clock steps back 9.5 s while sampling every second: the samples after the step are
    not stored until the clock is past the last stored one by more than the gap limit (3 s), so no
    pair of samples taken at different moments is counted as one interval. Measured CPU is then
    exactly the half core for every second it covers (interleaved samples made up busy time)."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = open_store(url)
    await ledger.open()
    clock = SteppedClock()
    collector = HalfCore(clock)
    store = open_samples(url)
    sampler = ComputeSampler([(collector, 1.0)], store, 86400.0, clock=clock)
    statuses = []
    for step in range(26):
        if step:
            clock.advance(1.0, step_back=9.5 if step == 6 else 0.0)
        await sampler.tick(collector)
        statuses.append(collector.status.last_error)
    samples = [s for s in await store.samples(0, 1e12) if isinstance(s, ProcessSample)]
    measured = cpu_busy(samples, 900.0, 1_100.0, max_gap=3.0)
    assert measured.covered_seconds > 0 and measured.gaps >= 1
    assert measured.busy_seconds == pytest.approx(0.5 * measured.covered_seconds)
    assert [s.at for s in samples] == sorted(s.at for s in samples)  # stored in time order
    assert (statuses[6] or "").startswith("the clock went back 9.500 s: no samples until it passes 1008.000")
    assert statuses[-1] is None  # sampling resumed
    await store.close()
    await ledger.close()
