"""The `nvml` collector (nvidia-ml-py): per GPU utilisation, memory, power and energy, and each
process's GPU memory and SM share. Without a driver or GPU it says "NVML not available: <reason>"
and samples nothing; the gateway keeps serving.

`sample_from_reading` maps one raw reading (the dict the live reader builds, the same shape as the
fixture's nvml_samples.jsonl lines) to a GpuSample: the recorded trace and the live GPU share it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from costwarden.domain.collector_status import CollectorStatus
from costwarden.domain.compute_sample import GpuProcess, GpuSample


def sample_from_reading(reading: Mapping[str, Any], gpu: int = 0) -> GpuSample:
    """One GPU sample from a raw NVML reading; a process without a utilisation sample has sm None."""
    sm = {int(p["pid"]): float(p["sm"]) for p in reading.get("proc_util") or ()}
    processes = tuple(
        GpuProcess(pid=int(p["pid"]), memory_bytes=int(p.get("used_gpu_memory") or 0), sm_pct=sm.get(int(p["pid"])))
        for p in reading.get("procs") or ()
    )
    energy = reading.get("energy_mj")
    return GpuSample(
        at=float(reading["ts"]),
        gpu=gpu,
        util_pct=float(reading["gpu_util"]),
        memory_used_bytes=int(reading["fb_used_bytes"]),
        power_mw=int(reading.get("power_mw") or 0),
        energy_mj=None if energy is None else int(energy),
        processes=processes,
    )


class NvmlCollector:
    """Reads every GPU once per call. `sample` blocks (NVML is a C library): run it off the event loop."""

    def __init__(self, name: str = "nvml") -> None:
        self.status = CollectorStatus(name)
        self._nvml: Any = None

    def start(self) -> bool:
        try:
            import pynvml  # optional dependency, loaded only when configured

            pynvml.nvmlInit()
        except Exception as exc:  # ImportError, NVMLError (no driver, no GPU): reported, not raised
            self.status.last_error = f"NVML not available: {exc or type(exc).__name__}"
            self.status.running = False
            return False
        self._nvml = pynvml
        self.status.running = True
        self.status.last_error = None
        return True

    def sample(self, now: float) -> list[GpuSample]:
        nvml = self._nvml
        if nvml is None:
            return []
        out = []
        for index in range(nvml.nvmlDeviceGetCount()):
            out.append(sample_from_reading(read_device(nvml, nvml.nvmlDeviceGetHandleByIndex(index), now), index))
        return out

    def stop(self) -> None:
        if self._nvml is not None:
            self._nvml.nvmlShutdown()
            self._nvml = None
        self.status.running = False


def read_device(nvml: Any, handle: Any, now: float) -> dict[str, Any]:
    """One device's raw reading (the shape of the fixture's nvml_samples.jsonl lines)."""
    util = nvml.nvmlDeviceGetUtilizationRates(handle)
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    reading: dict[str, Any] = {
        "ts": now,
        "gpu_util": util.gpu,
        "mem_util": util.memory,
        "fb_used_bytes": memory.used,
        "power_mw": _unless_unsupported(nvml, nvml.nvmlDeviceGetPowerUsage, handle),
        "energy_mj": _unless_unsupported(nvml, nvml.nvmlDeviceGetTotalEnergyConsumption, handle),
        "procs": [
            {"pid": p.pid, "used_gpu_memory": p.usedGpuMemory or 0}
            for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle)
        ],
    }
    try:
        reading["proc_util"] = [
            {"pid": u.pid, "sm": u.smUtil, "mem": u.memUtil, "ts_us": u.timeStamp}
            for u in nvml.nvmlDeviceGetProcessUtilization(handle, int((now - 1.0) * 1_000_000))
        ]
    except nvml.NVMLError as exc:  # "Not Found" when no process ran a kernel since the last read
        reading["proc_util_error"] = str(exc)
    return reading


def _unless_unsupported(nvml: Any, read: Any, handle: Any) -> Any:
    """A reading some GPUs do not have (power before Kepler's boards, the energy counter before
    Volta, some vGPUs): None when NVML says it is not supported, never a made-up figure."""
    try:
        return read(handle)
    except nvml.NVMLError_NotSupported:
        return None
