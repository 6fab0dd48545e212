"""Live: MLServer serving iris behind the gateway with the `process` collector on. Two teams send
different loads, then a quiet stretch; the collector sees MLServer's CPU seconds grow, the allocation
splits the replica cost in proportion to each team's busy time (computed here from the ledger), idle
covers the quiet stretch, and the rows sum to the provisioned cost exactly. Without a GPU the `nvml`
collector says so in /readyz and the gateway keeps serving."""

from __future__ import annotations

import asyncio
import subprocess
import time
from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import httpx
import orjson

from costwarden.domain.compute_sample import ProcessSample
from costwarden.domain.record import UsageRecord
from costwarden.storage.factory import open_samples
from tests.integration import ledger
from tests.integration.procs import VENV_BIN, Gateway, MLServer, TextModel, free_port, wait_until
from tests.integration.setup_config import ADMIN_TOKEN, KEYS, Upstreams, config_dict, write_config

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PRICE = Decimal("3.6")
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]] * 40  # 120 flowers a request


def _body() -> dict[str, object]:
    flat = [x for row in ROWS for x in row]
    return {"inputs": [{"name": "predict", "shape": [len(ROWS), 4], "datatype": "FP32", "data": flat}]}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _busy_by_team(records: list[UsageRecord], start: float, end: float) -> dict[str, float]:
    spans = [
        (max(r.ended_at - r.upstream_ms / 1000, start), min(r.ended_at, end), r.team or "")
        for r in records
        if r.deployment == "iris" and r.upstream_ms is not None
    ]
    points = sorted({t for a, b, _ in spans for t in (a, b)})
    shares: dict[str, float] = {}
    for lo, hi in pairwise(points):
        live = [team for a, b, team in spans if a < (lo + hi) / 2 < b]
        for team in live:
            shares[team] = shares.get(team, 0.0) + (hi - lo) / len(live)
    return shares


def _samples(url: str, start: float, end: float) -> list[ProcessSample]:
    async def read() -> list[ProcessSample]:
        store = open_samples(url)
        try:
            return [s for s in await store.samples(start, end) if isinstance(s, ProcessSample)]
        finally:
            await store.close()

    return asyncio.run(read())


def _gateway(mlserver: MLServer, textmodel: TextModel, tmp_path: Path) -> Gateway:
    data = config_dict(Upstreams(text=textmodel.url, iris=mlserver.url), tmp_path)
    next(d for d in data["deployments"] if d["name"] == "iris")["compute"] = {"profile": "cpu-box", "replicas": 1}
    data["hardware"] = [{"name": "cpu-box", "vcpus": 1, "memory_gib": 4, "hourly_usd": str(PRICE)}]
    data["compute"] = {
        "collectors": [{"type": "process", "deployment": "iris", "interval_seconds": 0.25}, {"type": "nvml"}]
    }
    config = write_config(tmp_path / "costwarden.yaml", data)
    return Gateway(config, free_port(), tmp_path, data["storage"]["ledger"])


def _ready_and_metrics(gateway: Gateway) -> None:
    """/readyz reports the collectors (nvml says why it is off on a host without a GPU); /metrics the
    replica price and the collectors' state."""
    ready = httpx.get(gateway.url + "/readyz").json()
    collectors = {c["name"]: c for c in ready["compute_collectors"]}
    assert collectors["process:iris"]["running"] is True
    nvml = collectors["nvml"]
    if not nvml["running"]:  # no GPU here: said clearly, and the gateway serves on
        assert nvml["last_error"].startswith("NVML not available: ")
    metrics = httpx.get(gateway.url + "/metrics").text
    assert 'costwarden_replica_hourly_cost_usd{deployment="iris",profile="cpu-box"} 3.6' in metrics
    assert 'costwarden_compute_collector_up{collector="process:iris"} 1.0' in metrics


def test_process_collector_and_allocation_on_mlserver(mlserver: MLServer, textmodel: TextModel, tmp_path: Path) -> None:
    gateway = _gateway(mlserver, textmodel, tmp_path)
    config = gateway.config_path
    gateway.start()
    try:
        _ready_and_metrics(gateway)
        time.sleep(0.6)
        start = time.time()
        sent = 0
        with httpx.Client(base_url=gateway.url, timeout=30) as client:
            for i in range(200):  # search sends three requests for each one of ads
                team = "ads" if i % 4 == 3 else "search"
                auth = {"Authorization": f"Bearer {KEYS[team]}"}
                reply = client.post("/v2/models/iris/infer", json=_body(), headers=auth)
                assert reply.status_code == 200, reply.text
                sent += 1
        time.sleep(2.0)  # the quiet stretch: the replica is provisioned and idle
        end = time.time()
        records = ledger.wait_for(gateway.ledger, sent)
        wait_until(lambda: len(_samples(gateway.ledger, end, end + 60)) > 0, 10, "a sample after the window")
        samples = _samples(gateway.ledger, start - 1, end + 1)
        assert samples[-1].cpu_seconds > samples[0].cpu_seconds  # MLServer's CPU seconds grew
        params = {"aggregate": "team", "from": _iso(start), "to": _iso(end)}
        report = httpx.get(gateway.url + "/admin/v1/allocation", params=params, headers=ADMIN, timeout=30).json()
        for bad in ({"aggregate": "colour"}, {"idle": "never"}, {"since": "1h", "from": "2026-01-01"}, {"since": "9x"}):
            refused = httpx.get(gateway.url + "/admin/v1/allocation", params=bad, headers=ADMIN, timeout=30)
            assert refused.status_code == 400 and refused.json()["detail"], (bad, refused.text)
        status = subprocess.run(
            [str(VENV_BIN / "costwarden"), "compute", "status", "--format", "json", "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    finally:
        gateway.stop()
    rows = {r["name"]: r for r in report["rows"]}
    assert set(rows) == {"search", "ads", "__idle__"}
    assert "measured (process collector)" in report["pricing"]["iris"]
    busy = _busy_by_team(records, start, end)
    expected_search = busy["search"] / (busy["search"] + busy["ads"])
    used = {t: Decimal(rows[t]["usedCost"]) for t in ("search", "ads")}
    assert abs(float(used["search"] / (used["search"] + used["ads"])) - expected_search) < 0.05
    assert used["search"] > 2 * used["ads"]  # three times the requests
    cpu = sum(b.cpu_seconds - a.cpu_seconds for a, b in pairwise(s for s in samples if start <= s.at <= end))
    assert abs(report["totals"]["busySeconds"] - cpu) <= 0.05 * cpu + 0.5  # CPU s, the window's edges pro rata
    assert Decimal(rows["__idle__"]["idleCost"]) >= PRICE * Decimal("1.5") / 3600  # at least the quiet stretch
    total = sum(Decimal(r["totalCost"]) for r in report["rows"])
    assert total == Decimal(report["totals"]["provisionedCost"])  # the identity, exact
    assert abs(total - PRICE * Decimal(end - start) / 3600) < Decimal("0.000001")
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())  # the worked example in docs/compute.md
    saved = {s["name"]: s for s in orjson.loads(status.stdout)}
    assert saved["process:iris"]["samples"] > 0 and saved["process:iris"]["last_error"] is None
