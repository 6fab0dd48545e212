"""The nvml collector on a machine without an NVIDIA driver or GPU: a clear status, no samples, no raise;
on a GPU without power or energy readings: sampled without them."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pynvml

from costwarden.collectors.nvml import NvmlCollector, read_device, sample_from_reading
from costwarden.domain.compute_sample import GpuProcess


def test_without_a_gpu_nvml_says_so_and_samples_nothing() -> None:
    collector = NvmlCollector()
    if collector.start():  # a GPU host: the collector must sample every GPU
        try:
            samples = collector.sample(time.time())
            assert samples and all(0 <= s.util_pct <= 100 for s in samples)
        finally:
            collector.stop()
        return
    assert collector.status.running is False
    assert collector.status.last_error is not None and collector.status.last_error.startswith("NVML not available: ")
    assert collector.sample(time.time()) == []
    collector.stop()


class OlderGpu:
    """A stand-in for the NVML library (unit test; no GPU here) on a GPU that supports neither the
    energy counter nor power readings (pre-Volta boards, some vGPUs): those calls raise NotSupported,
    as pynvml does."""

    NVMLError = pynvml.NVMLError
    NVMLError_NotSupported = pynvml.NVMLError_NotSupported

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(gpu=40, memory=10)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(used=3 << 30)

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        raise pynvml.NVMLError_NotSupported()

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        raise pynvml.NVMLError_NotSupported()

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=4242, usedGpuMemory=1 << 30)]

    def nvmlDeviceGetProcessUtilization(self, handle: int, since: int) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=4242, smUtil=35, memUtil=5, timeStamp=since + 1)]


def test_a_gpu_without_power_or_energy_readings_is_still_sampled() -> None:
    """Power and energy are left out (0 and None: unknown, never made up); utilisation, memory and the
    processes are sampled."""
    (sample,) = [sample_from_reading(read_device(OlderGpu(), 0, 1_000.0))]
    assert sample.util_pct == 40 and sample.memory_used_bytes == 3 << 30
    assert sample.power_mw == 0 and sample.energy_mj is None
    assert sample.processes == (GpuProcess(4242, 1 << 30, 35.0),)
