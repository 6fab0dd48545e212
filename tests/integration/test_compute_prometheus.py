"""A real Prometheus scrapes a small exporter that replays the H200 trace (2x speed) under DCGM and
cAdvisor names; the `prometheus` collector reads it back through PromQL and the measured busy time
and GPU memory equal what Prometheus stored (read back here as raw samples), and the trace's requests
allocated with the collector's busy time equal the allocation with the replay's. A PromQL that errors and a Prometheus
that is down give a clear status and no sample. A deployment whose replicas come from Prometheus
(`kube_deployment_status_replicas`, scaled from 1 to 3 by the exporter) is provisioned step by step."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from costwarden.collectors.prometheus import PrometheusCollector
from costwarden.config import parse_config
from costwarden.config.compute import PrometheusCollector as PrometheusConfig
from costwarden.domain.allocation import QUANTUM, allocate, money
from costwarden.domain.allocation_input import IntervalGatherer, Provision
from costwarden.domain.compute_sample import GpuSample, ProcessSample
from costwarden.services.allocation import AllocationQuery, allocation
from costwarden.services.compute import measured_busy
from costwarden.services.compute_tally import ComputeTally
from costwarden.storage.sqlite import SQLiteStore
from tests.integration.procs import free_port, wait_until
from tests.integration.prometheus_server import Prometheus
from tests.unit.collectors.test_gpu_trace import H200, REQUESTS, trace_record

TRACE = Path(__file__).parents[1] / "fixtures" / "gpu-trace-h200" / "nvml_samples.jsonl"
LINES = [json.loads(line) for line in TRACE.read_text().splitlines() if line.strip()]
MIB = 1 << 20  # DCGM_FI_DEV_FB_USED is in MiB
SPEED = 2.0  # 45 s of trace in ~23 s: the collector reads it while the models still run
CONFIG = """\
hardware: [{name: h200, accelerator: NVIDIA H200, accelerator_count: 1, vcpus: 16, memory_gib: 128, hourly_usd: 3.72}]
deployments:
  - {name: shared-h200, protocol: v2, upstream: "http://127.0.0.1:9", compute: {profile: h200, replicas: 2}}
  - {name: cpu-only, protocol: v2, upstream: "http://127.0.0.1:9", compute: {profile: aws-c7i.large}}
compute:
  collectors: [{type: prometheus, url: "PROM", interval_seconds: 1}]
"""


class Replay(BaseHTTPRequestHandler):
    began = time.time()
    scale_at = float("inf")  # when the fraud deployment goes from 1 replica to 3

    def do_GET(self) -> None:
        offset = LINES[0]["ts"] + (time.time() - self.began) * SPEED
        line = next((x for x in reversed(LINES) if x["ts"] <= offset), LINES[0])
        cpu = sum(p["user_s"] + p["system_s"] for p in line["cpu"].values())
        rss = sum(p["rss_bytes"] for p in line["cpu"].values())
        body = (
            f'DCGM_FI_PROF_GR_ENGINE_ACTIVE{{deployment="shared-h200",gpu="0"}} {line["gpu_util"] / 100}\n'
            f'DCGM_FI_PROF_GR_ENGINE_ACTIVE{{deployment="elsewhere",gpu="1"}} 0.9\n'
            f'DCGM_FI_DEV_FB_USED{{deployment="shared-h200",gpu="0"}} {line["fb_used_bytes"] / MIB}\n'
            f'container_cpu_usage_seconds_total{{deployment="shared-h200",container="model"}} {cpu}\n'
            f'container_cpu_usage_seconds_total{{deployment="cpu-only",container="model"}} {cpu / 4}\n'
            f'container_memory_working_set_bytes{{deployment="shared-h200",container="model"}} {rss}\n'
            f'kube_deployment_status_replicas{{deployment="fraud"}} {1 if time.time() < self.scale_at else 3}\n'
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain; version=0.0.4")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    port = free_port()
    Replay.began = time.time()  # the replay starts with the test, not when this module was imported
    Replay.scale_at = float("inf")
    server = ThreadingHTTPServer(("127.0.0.1", port), Replay)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    prom = Prometheus(tmp_path, [f"127.0.0.1:{port}"], "groups: []\n")
    prom.start()
    Replay.began = time.time()  # and again once Prometheus is up (its start can take seconds here)
    try:
        yield prom
    finally:
        prom.stop()
        server.shutdown()
        server.server_close()


def _latest(raw: list[list[Any]], t: float) -> float:
    """The value an instant query at `t` sees: the newest raw sample at or before it."""
    return float([v for ts, v in raw if float(ts) <= t][-1])


def test_the_collector_reads_back_what_prometheus_stored(prometheus: Prometheus) -> None:
    config = parse_config(CONFIG.replace("PROM", prometheus.url))
    entry = config.compute.collectors[0]
    assert isinstance(entry, PrometheusConfig)
    collector = PrometheusCollector(entry, ["shared-h200", "cpu-only"])
    assert collector.start()
    deadline = time.time() + 30
    while not prometheus.vector("DCGM_FI_PROF_GR_ENGINE_ACTIVE") and time.time() < deadline:
        time.sleep(0.2)
    samples: list[ProcessSample | GpuSample] = []
    time.sleep(3.0)
    for _ in range(7):
        time.sleep(1.0)
        # As of 2 s ago: every scrape up to then is stored, so what the query sees is what the raw
        # samples read back below hold (a scrape still being written could differ by one interval).
        samples += collector.sample(time.time() - 2.0)
    assert collector.status.last_error is None, collector.status.last_error
    times = sorted({s.at for s in samples})
    start, end = times[0], times[-1]
    window = f"{int(end - start) + 60}s"
    cpu_raw = prometheus.vector(f'container_cpu_usage_seconds_total{{deployment="shared-h200"}}[{window}] @ {end}')
    gpu_raw = prometheus.vector(f'DCGM_FI_PROF_GR_ENGINE_ACTIVE{{deployment="shared-h200"}}[{window}] @ {end}')
    cpu_values, gpu_values = cpu_raw[0]["values"], gpu_raw[0]["values"]
    expected_gpu = sum((b - a) * _latest(gpu_values, b) for a, b in pairwise(times))
    expected_cpu = _latest(cpu_values, end) - _latest(cpu_values, start)
    measured = measured_busy(config, samples, start, end)
    assert measured["shared-h200"][0] == pytest.approx(expected_gpu * 2, rel=1e-9, abs=1e-9)  # x 2 replicas
    assert measured["shared-h200"][1] == "prometheus (DCGM)"
    cpu_only, basis = measured["cpu-only"]  # a quarter of the CPU seconds, over the profile's 2 vCPUs
    assert cpu_only == pytest.approx(expected_cpu / 4 / 2, rel=1e-9, abs=1e-9) and basis == "prometheus (cAdvisor)"
    assert "elsewhere" not in {s.deployment for s in samples}  # not a configured deployment
    rss = [s.rss_bytes for s in samples if isinstance(s, ProcessSample) and s.deployment == "shared-h200"]
    assert rss and max(rss) > 0  # working-set memory read back too
    _allocations_match(measured["shared-h200"], expected_gpu * 2, start, end)
    fb_raw = prometheus.vector(f'DCGM_FI_DEV_FB_USED{{deployment="shared-h200"}}[{window}] @ {end}')
    gpu_memory = [(s.at, s.memory_used_bytes) for s in samples if isinstance(s, GpuSample)]
    assert gpu_memory and all(m == int(_latest(fb_raw[0]["values"], at) * MIB) > 0 for at, m in gpu_memory)


def _allocations_match(measured: tuple[float, str], replayed: float, start: float, end: float) -> None:
    """The trace's requests on the replay's timeline (2x speed), allocated with the busy time the
    collector measured and with the busy time the replay served (as Prometheus stored it): the same
    rows, each within the nano-dollar the two float sums may round apart; both balance exactly."""
    replay_start = Replay.began

    def on_replay(ts: float) -> float:
        return replay_start + (ts - float(LINES[0]["ts"])) / SPEED

    requests = [{**r, "start": on_replay(r["start"]), "end": on_replay(r["end"])} for r in REQUESTS]
    results = []
    for busy in (measured, (replayed, "prometheus (DCGM)")):
        gatherer = IntervalGatherer(start, end, ("team",), {"shared-h200": Provision(H200, 2)})
        for request in requests:
            gatherer.add(trace_record(request))
        results.append(allocate(gatherer.usages({"shared-h200": busy}), 1, "separate"))
    collected, replay = results
    assert collected.provisioned_usd == replay.provisioned_usd > 0
    assert [r.group for r in collected.rows] == [r.group for r in replay.rows] and len(replay.rows) >= 2
    for mine, theirs in zip(collected.rows, replay.rows, strict=True):
        assert abs(mine.used_usd - theirs.used_usd) <= QUANTUM and abs(mine.idle_usd - theirs.idle_usd) <= QUANTUM
    for result in results:
        assert sum((r.total_usd for r in result.rows), Decimal(0)) == result.provisioned_usd


def test_a_bad_query_and_a_prometheus_that_is_down(prometheus: Prometheus) -> None:
    bad = PrometheusConfig.model_validate(
        {"type": "prometheus", "url": prometheus.url, "queries": {"gpu_active": "avg by ($label) ("}}
    )
    collector = PrometheusCollector(bad, ["shared-h200"])
    assert collector.sample(time.time()) == []
    assert (collector.status.last_error or "").startswith("PromQL error in gpu_active: ")
    down = PrometheusCollector(
        PrometheusConfig.model_validate({"type": "prometheus", "url": f"http://127.0.0.1:{free_port()}"}), ["x"]
    )
    assert down.sample(time.time()) == []
    assert (down.status.last_error or "").startswith("Prometheus unreachable at ")


REPLICAS = """\
hardware: [{name: h200, accelerator: NVIDIA H200, accelerator_count: 1, vcpus: 16, memory_gib: 128, hourly_usd: 3.72}]
deployments:
  - name: fraud
    protocol: v2
    upstream: "http://127.0.0.1:9"
    compute: {profile: h200, replicas: {prometheus: 'sum(kube_deployment_status_replicas{deployment="fraud"})',
                                        step_seconds: 1}}
compute:
  collectors: [{type: prometheus, url: "PROM", interval_seconds: 1}]
storage:
  ledger: sqlite:///LEDGER
"""


async def test_replicas_from_prometheus_are_provisioned_step_by_step(prometheus: Prometheus, tmp_path: Path) -> None:
    """Provisioned = Σ replicas(t) x price x 1 s, with replicas(t) read back here by an instant query
    at each step; the rows sum to it exactly. A Prometheus that is down, or a window before its data,
    leaves the deployment out with a note: no replica count is made up."""
    ledger = SQLiteStore(str(tmp_path / "ledger.db"))
    await ledger.open()  # an empty ledger: all of the replica time is idle
    await ledger.close()
    config = parse_config(REPLICAS.replace("PROM", prometheus.url).replace("LEDGER", str(tmp_path / "ledger.db")))
    query = 'sum(kube_deployment_status_replicas{deployment="fraud"})'
    wait_until(lambda: bool(prometheus.vector(query)), 30, "a scrape of the replica count")  # 1 replica
    start = float(int(time.time()) + 1)
    end = start + 8
    Replay.scale_at = start + 4.5  # then 3
    await asyncio.sleep(max(end + 3 - time.time(), 0))  # every scrape up to `end` is stored
    counts = [prometheus.vector(f"{query[:-1]} @ {start + k:.3f})") for k in range(8)]
    replica_seconds = sum((Decimal(c[0]["value"][1]) for c in counts if c), Decimal(0))
    assert all(counts) and {c[0]["value"][1] for c in counts} == {"1", "3"}  # it scaled inside the window

    report = await allocation(config, AllocationQuery(start, end, ("team",)))
    result = report.allocation
    assert result.provisioned_usd == money(Decimal("3.72"), replica_seconds) > 0
    assert sum((r.total_usd for r in result.rows), Decimal(0)) == result.provisioned_usd  # all idle here
    assert result.provisioned_seconds == float(replica_seconds)
    assert "replica-h" in result.bases["fraud"] and report.notes == []

    # The compute cost metrics' tally: two ticks of 4 s over the same grid count the same replica-seconds
    # (each tick's cost floored to the nano-dollar on its own); Prometheus down keeps the mark.
    tally = ComputeTally(config, _leading, lambda: None, 15.0, start)
    tally.mark, tally.marks["fraud"] = start, start
    await tally.tick(start + 4 + tally.lag_s)
    await tally.tick(end + tally.lag_s)
    totals = tally.totals[("fraud", "h200")]
    halves = [sum((Decimal(c[0]["value"][1]) for c in part), Decimal(0)) for part in (counts[:4], counts[4:])]
    assert totals.gpu_seconds == replica_seconds and totals.uncounted_seconds == 0
    assert totals.compute_usd == totals.idle_usd == sum((money(Decimal("3.72"), h) for h in halves), Decimal(0))

    before = await allocation(config, AllocationQuery(start - 86400, start - 86000, ("team",)))
    assert before.allocation.provisioned_usd == 0 and "fraud" not in before.allocation.bases
    assert before.notes[0] == "fraud: Prometheus has no replica count over the window; not allocated"
    down = parse_config(REPLICAS.replace("PROM", f"http://127.0.0.1:{free_port()}")
                        .replace("LEDGER", str(tmp_path / "ledger.db")))  # fmt: skip
    gone = await allocation(down, AllocationQuery(start, end, ("team",)))
    assert gone.allocation.provisioned_usd == 0
    assert gone.notes[0].startswith("fraud: replica count unknown (Prometheus unreachable at ")
    stalled = ComputeTally(down, _leading, lambda: None, 15.0, start)
    stalled.mark, stalled.marks["fraud"] = start, start
    await stalled.tick(end + stalled.lag_s)
    assert stalled.marks["fraud"] == start and stalled.totals[("fraud", "h200")].compute_usd == 0


async def _leading(now: float) -> bool:
    return True
