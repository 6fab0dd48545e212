"""Real data: a recorded H200 trace (two model processes sharing one GPU) replayed through the nvml
collector's parsing and the allocation engine. Expected figures are computed here, straight from
the request and sample files, by a different method (elementary segments, brute force)."""

from __future__ import annotations

import json
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from costwarden.collectors.nvml import sample_from_reading
from costwarden.config import parse_config
from costwarden.domain.allocation import IDLE, QUANTUM, allocate
from costwarden.domain.allocation_input import IntervalGatherer, Provision
from costwarden.domain.compute_sample import ProcessSample, gpu_busy, gpu_busy_by_owner
from costwarden.domain.hardware import HardwareProfile
from costwarden.domain.record import Outcome, UsageRecord
from costwarden.services.compute import measured_busy

TRACE = Path(__file__).parents[2] / "fixtures" / "gpu-trace-h200"
H200 = HardwareProfile(name="h200", hourly_usd=Decimal("3.72"), accelerator="NVIDIA H200", accelerator_count=1)


def _lines(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (TRACE / name).read_text().splitlines() if line.strip()]


REQUESTS = _lines("requests_A.jsonl") + _lines("requests_B.jsonl")
SAMPLES = _lines("nvml_samples.jsonl")
START, END = SAMPLES[0]["ts"], SAMPLES[-1]["ts"]


def trace_record(req: dict[str, Any]) -> UsageRecord:
    """A ledger record of one request of the trace, served on `shared-h200` for its model's team."""
    return UsageRecord(
        request_id=f"{req['model']}-{req['request']}",
        started_at=req["start"],
        ended_at=req["end"],
        key_id=None,
        team=f"team-{req['model']}",
        project=None,
        environment="prod",
        tags={},
        deployment="shared-h200",
        protocol="v2",
        endpoint="/v2/models/x/infer",
        method="POST",
        model=req["model"],
        stream=False,
        status=200,
        upstream_status=200,
        outcome=Outcome.SERVED,
        error_code=None,
        latency_ms=(req["end"] - req["start"]) * 1000,
        upstream_ms=(req["end"] - req["start"]) * 1000,
        items=req["batch"],
    )


def _expected_shares() -> tuple[float, dict[str, float]]:
    """Union of busy time and each team's equal share of it, by elementary segments (brute force)."""
    points = sorted({t for r in REQUESTS for t in (r["start"], r["end"])})
    union, shares = 0.0, {"team-A": 0.0, "team-B": 0.0}
    for lo, hi in pairwise(points):
        mid = (lo + hi) / 2
        live = [r for r in REQUESTS if r["start"] < mid < r["end"]]
        if live:
            union += hi - lo
            for r in live:
                shares[f"team-{r['model']}"] += (hi - lo) / len(live)
    return union, shares


def _gatherer() -> IntervalGatherer:
    gatherer = IntervalGatherer(START, END, ("team",), {"shared-h200": Provision(H200, 1)})
    for req in REQUESTS:
        gatherer.add(trace_record(req))
    return gatherer


def test_request_intervals_allocate_the_gpu_as_the_trace_says() -> None:
    union, shares = _expected_shares()
    assert sum(r["end"] - r["start"] for r in REQUESTS if r["model"] == "A") == pytest.approx(5.42, abs=0.01)
    result = allocate(_gatherer().usages(), 1, "separate")
    rows = {r.group[0]: r for r in result.rows}
    provisioned = H200.hourly_usd * Decimal(repr(END - START)) / 3600
    assert result.provisioned_usd == provisioned.quantize(QUANTUM, rounding="ROUND_FLOOR")
    assert result.busy_seconds == pytest.approx(union, rel=1e-6)
    for team, seconds in shares.items():
        assert rows[team].busy_seconds == pytest.approx(seconds, rel=1e-6)
        assert rows[team].requests == sum(1 for r in REQUESTS if f"team-{r['model']}" == team)
        expected_usd = H200.hourly_usd * Decimal(seconds) / 3600
        assert abs(rows[team].used_usd - expected_usd) < Decimal("0.000001")
    idle_seconds = END - START - union
    assert abs(rows[IDLE].idle_usd - H200.hourly_usd * Decimal(idle_seconds) / 3600) < Decimal("0.000001")
    assert float(rows[IDLE].gpu_hours) == pytest.approx(idle_seconds / 3600, rel=1e-6)
    assert sum((r.total_usd for r in result.rows), Decimal(0)) == result.provisioned_usd  # identity, exact
    assert result.efficiency == pytest.approx(union / (END - START), rel=1e-6)  # most of the GPU sat idle


def test_nvml_samples_measure_gpu_busy_and_map_processes_by_pid() -> None:
    samples = [sample_from_reading(line) for line in SAMPLES]
    expected = sum(
        b["gpu_util"] / 100 * (b["ts"] - a["ts"]) for a, b in pairwise(SAMPLES)
    )
    measured = gpu_busy(samples, START, END, max_gap=1.0)
    assert measured.busy_seconds == pytest.approx(expected, rel=1e-9) and measured.gaps == 0
    assert measured.covered_seconds == pytest.approx(END - START)
    pids = {p.pid for s in samples for p in s.processes}
    assert pids == {435, 436}  # the two model processes of trace_info.json
    with_sm = [p for s in samples for p in s.processes if p.sm_pct is not None]
    assert with_sm and all(0 <= p.sm_pct <= 100 for p in with_sm if p.sm_pct is not None)
    last = samples[-1]
    assert last.energy_mj == SAMPLES[-1]["energy_mj"] and last.memory_used_bytes == SAMPLES[-1]["fb_used_bytes"]
    # Measured busy time wins over the request intervals and is shared in their proportions.
    union, shares = _expected_shares()
    usages = _gatherer().usages({"shared-h200": (measured.busy_seconds, "nvml")})
    result = allocate(usages, 1, "separate")
    rows = {r.group[0]: r for r in result.rows}
    for team, seconds in shares.items():
        assert rows[team].busy_seconds == pytest.approx(measured.busy_seconds * seconds / union, rel=1e-6)
    assert sum((r.total_usd for r in result.rows), Decimal(0)) == result.provisioned_usd
    assert "measured (nvml)" in result.bases["shared-h200"]


def test_a_gap_in_the_samples_is_not_filled_in() -> None:
    samples = [sample_from_reading(line) for i, line in enumerate(SAMPLES) if not 100 <= i < 150]
    measured = gpu_busy(samples, START, END, max_gap=1.0)
    assert measured.gaps == 1
    assert measured.covered_seconds == pytest.approx(END - START - (SAMPLES[150]["ts"] - SAMPLES[99]["ts"]))


def test_gpu_busy_is_split_between_the_two_processes_by_pid() -> None:
    samples = [sample_from_reading(line) for line in SAMPLES]
    owners = {435: "model-a", 436: "model-b"}
    split = gpu_busy_by_owner(samples, owners, START, END, max_gap=1.0)
    expected = {"model-a": 0.0, "model-b": 0.0}
    for a, b in pairwise(SAMPLES):  # recomputed from the raw lines: SM share, else memory share
        seconds = (b["ts"] - a["ts"]) * b["gpu_util"] / 100
        present = {p["pid"] for p in b["procs"]}
        sm = {u["pid"]: u["sm"] for u in b.get("proc_util") or () if u["sm"] and u["pid"] in present}
        weights = sm or {p["pid"]: p["used_gpu_memory"] for p in b["procs"]}
        for pid, weight in weights.items():
            expected[owners[pid]] += seconds * weight / sum(weights.values())
    assert split == pytest.approx(expected, rel=1e-9)
    device = gpu_busy(samples, START, END, max_gap=1.0).busy_seconds
    assert sum(split.values()) <= device + 1e-9  # busy time with no process of theirs is not handed out
    assert split["model-a"] > split["model-b"] > 0  # A ran the larger model at 2.5x the rate


TWO_MODELS = """\
hardware: [{name: h200, accelerator: NVIDIA H200, accelerator_count: 1, vcpus: 16, memory_gib: 128, hourly_usd: 3.72}]
deployments:
  - {name: model-a, protocol: v2, upstream: "http://127.0.0.1:9001", compute: {profile: h200}}
  - {name: model-b, protocol: v2, upstream: "http://127.0.0.1:9002", compute: {profile: h200}}
compute:
  collectors:
    - {type: process, deployment: model-a, pid_file: /run/a.pid}
    - {type: process, deployment: model-b, pid_file: /run/b.pid}
    - {type: nvml, interval_seconds: 0.1}
"""


def test_two_gpu_deployments_are_measured_by_their_pids() -> None:
    config = parse_config(TWO_MODELS)
    owners = [ProcessSample(START, "model-a", 435, 0.0, 1, 1), ProcessSample(START, "model-b", 436, 0.0, 1, 1)]
    gpu = [sample_from_reading(line) for line in SAMPLES]
    measured = measured_busy(config, [*owners, *gpu], START, END)
    split = gpu_busy_by_owner(gpu, {435: "model-a", 436: "model-b"}, START, END, 0.3)
    assert measured == {"model-a": (split["model-a"], "nvml collector, by pid"),
                        "model-b": (split["model-b"], "nvml collector, by pid")}  # fmt: skip


def test_a_gpu_held_by_a_child_process_is_its_deployments() -> None:
    """The model servers' GPU contexts are held by their children (inference workers): the trace's pids
    435 and 436 are children of the processes the process collectors found (100 and 200)."""
    config = parse_config(TWO_MODELS)
    owners = [ProcessSample(START, "model-a", 100, 0.0, 1, 1, (435,)), ProcessSample(START, "model-b", 200, 0.0, 1, 1,
              (436, 437))]  # fmt: skip
    gpu = [sample_from_reading(line) for line in SAMPLES]
    measured = measured_busy(config, [*owners, *gpu], START, END)
    split = gpu_busy_by_owner(gpu, {435: "model-a", 436: "model-b"}, START, END, 0.3)
    assert split["model-a"] > 0 and split["model-b"] > 0
    assert measured == {"model-a": (split["model-a"], "nvml collector, by pid"),
                        "model-b": (split["model-b"], "nvml collector, by pid")}  # fmt: skip
