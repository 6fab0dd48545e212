"""The one place that picks a compute collector from its `compute.collectors` entry. Their libraries
(psutil, nvidia-ml-py: the `compute` extra) are imported only when a collector is configured."""

from __future__ import annotations

from urllib.parse import urlsplit

from costwarden.config.compute import CollectorConfig
from costwarden.config.compute import ProcessCollector as ProcessConfig
from costwarden.config.compute import PrometheusCollector as PrometheusConfig
from costwarden.config.models import Config
from costwarden.ports import ComputeCollector


def build_collectors(config: Config) -> list[tuple[ComputeCollector, float]]:
    """Each configured collector with its sampling interval (seconds)."""
    return [(_build(entry, config), entry.interval_seconds) for entry in config.compute.collectors]


def _build(entry: CollectorConfig, config: Config) -> ComputeCollector:
    if isinstance(entry, ProcessConfig):
        from costwarden.collectors.process import ProcessCollector, ProcessFinder

        port = entry.port
        if port is None and entry.pid_file is None and entry.cmdline is None:
            dep = config.deployment(entry.deployment)
            urls = dep.upstream_urls if dep is not None else ()
            port = urlsplit(urls[0]).port if urls else None
        return ProcessCollector(entry.deployment, ProcessFinder(port, entry.pid_file, entry.cmdline))
    if isinstance(entry, PrometheusConfig):
        from costwarden.collectors.prometheus import PrometheusCollector

        return PrometheusCollector(entry, [d.name for d in config.deployments if d.compute is not None])
    from costwarden.collectors.nvml import NvmlCollector

    return NvmlCollector()
