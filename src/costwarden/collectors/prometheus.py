"""The `prometheus` collector: PromQL over a Prometheus HTTP API (DCGM-exporter, cAdvisor), per
deployment label: cumulative CPU seconds, working-set memory, the GPUs' mean engine activity and the
GPU memory they hold (DCGM_FI_DEV_FB_USED).
A query that errors or a Prometheus that is down gives a clear status and no sample at all."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Collection
from typing import Any

from costwarden.config.compute import PrometheusCollector as PrometheusConfig
from costwarden.domain.collector_status import CollectorStatus
from costwarden.domain.compute_sample import PROMETHEUS_GPU, GpuSample, ProcessSample


class QueryFailed(RuntimeError):
    pass


class PrometheusCollector:
    def __init__(self, config: PrometheusConfig, deployments: Collection[str]) -> None:
        self.config = config
        self.deployments = set(deployments)
        self.status = CollectorStatus("prometheus")

    def start(self) -> bool:
        self.status.running = True
        return True

    def _query(self, name: str, promql: str, now: float) -> dict[str, float]:
        """{deployment: value} of an instant vector; QueryFailed says why there is none."""
        query = promql.replace("$label", self.config.label)
        answer = _api(str(self.config.url), "query", {"query": query, "time": f"{now:.3f}"}, name,
                      self.config.timeout_seconds)  # fmt: skip
        if answer.get("status") != "success" or answer["data"]["resultType"] != "vector":
            raise QueryFailed(f"PromQL error in {name}: {answer.get('error', 'not an instant vector')}")
        values: dict[str, float] = {}
        for item in answer["data"]["result"]:
            deployment = item["metric"].get(self.config.label)
            if deployment in self.deployments:
                values[deployment] = float(item["value"][1])
        return values

    def sample(self, now: float) -> list[ProcessSample | GpuSample]:
        queries = self.config.queries
        try:
            cpu = self._query("cpu_seconds", queries.cpu_seconds, now)
            memory = self._query("memory_bytes", queries.memory_bytes, now)
            gpu = self._query("gpu_active", queries.gpu_active, now)
            gpu_memory = self._query("gpu_memory_bytes", queries.gpu_memory_bytes, now) if gpu else {}
        except QueryFailed as exc:
            self.status.last_error = str(exc)
            return []
        self.status.last_error = None
        out: list[ProcessSample | GpuSample] = [
            ProcessSample(now, dep, 0, seconds, int(memory.get(dep, 0)), 0) for dep, seconds in sorted(cpu.items())
        ]
        out += [
            GpuSample(now, PROMETHEUS_GPU, 100.0 * active, int(gpu_memory.get(dep, 0)), 0, None, (), dep)
            for dep, active in sorted(gpu.items())
        ]
        return out

    def stop(self) -> None:
        self.status.running = False


def _api(base: str, path: str, params: dict[str, str], name: str, timeout: float) -> dict[str, Any]:
    url = f"{base.rstrip('/')}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            answer: dict[str, Any] = json.loads(reply.read())
            return answer
    except urllib.error.HTTPError as exc:
        with exc:
            try:
                detail = json.loads(exc.read() or b"{}").get("error", exc.reason)
            except ValueError:
                detail = exc.reason
        raise QueryFailed(f"PromQL error in {name}: {detail}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise QueryFailed(f"Prometheus unreachable at {base}: {exc}") from exc


def query_range(
    base: str, promql: str, start: float, end: float, step: float, timeout: float
) -> list[tuple[float, str]]:
    """(time, value) of every series a range query returns (a matrix), evaluated at start, start +
    step, ... up to end; QueryFailed says why there is none."""
    params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:.3f}"}
    answer = _api(base, "query_range", params, "replicas", timeout)
    if answer.get("status") != "success" or answer.get("data", {}).get("resultType") != "matrix":
        raise QueryFailed(f"PromQL error in replicas: {answer.get('error', 'not a range vector')}")
    return [(float(at), str(value)) for series in answer["data"]["result"] for at, value in series["values"]]
