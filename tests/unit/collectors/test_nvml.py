"""The nvml collector on a machine without an NVIDIA driver or GPU: a clear status, no samples, no raise."""

from __future__ import annotations

import time

from costwarden.collectors.nvml import NvmlCollector


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
