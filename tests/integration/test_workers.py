"""`server.workers: 2`: a master and two worker processes on one port, on both engines.

Both workers take requests, every request has one ledger record, the merged `/metrics` counts every
request once; a worker killed with SIGKILL under traffic is restarted and its spool replayed (nothing
lost, nothing doubled); SIGTERM to the master stops everything with exit 0 and empty spools.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.integration import ledger
from tests.integration.conftest import GatewayFactory
from tests.integration.procs import Gateway, wait_until
from tests.integration.redis_server import PrivateRedis
from tests.integration.setup_config import KEYS

HEADERS = {"Authorization": f"Bearer {KEYS['search']}"}
BODY = {"model": "chat", "messages": [{"role": "user", "content": "go"}], "max_tokens": 4}
SAMPLE = re.compile(r'^costwarden_requests_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$', re.M)


@pytest.fixture(params=["asgi", "fast"])
def engine(request: pytest.FixtureRequest) -> dict[str, str]:
    return {"engine": request.param}


def _workers(gateway: Gateway) -> list[psutil.Process]:
    assert gateway.proc is not None
    return psutil.Process(gateway.proc.pid).children()


def _requests_by_worker(gateway: Gateway) -> dict[str, float]:
    """costwarden_requests_total summed per worker label, from one scrape."""
    text = httpx.get(gateway.admin_url + "/metrics", timeout=10).text
    totals: dict[str, float] = {}
    for match in SAMPLE.finditer(text):
        worker = re.search(r'worker="(\d+)"', match["labels"])
        assert worker is not None, f"a sample without its worker label: {match[0]}"
        totals[worker[1]] = totals.get(worker[1], 0.0) + float(match["value"])
    return totals


def _send(gateway: Gateway, count: int, received: list[str], stop: threading.Event | None = None) -> None:
    """`count` requests, each on a new connection (so the kernel hands them to either worker)."""
    for _ in range(count):
        if stop is not None and stop.is_set():
            return
        try:
            r = httpx.post(gateway.url + "/v1/chat/completions", json=BODY, headers=HEADERS, timeout=10)
        except httpx.HTTPError:
            time.sleep(0.05)
            continue
        if r.status_code == 200 and r.json().get("choices"):
            received.append(r.headers["x-costwarden-request-id"])


def _load(
    gateway: Gateway, threads: int, each: int, stop: threading.Event | None = None, received: list[str] | None = None
) -> list[str]:
    """`threads` clients sending `each` requests; the ids of the answered ones, in `received` as they come."""
    received = [] if received is None else received
    workers = [threading.Thread(target=_send, args=(gateway, each, received, stop)) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(120)
    return received


def _answering(gateway: Gateway) -> set[str]:
    """The workers whose series one scrape holds."""
    return set(re.findall(r'worker="(\d+)"', httpx.get(gateway.admin_url + "/metrics", timeout=10).text))


def _spool_folders(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "spool").iterdir() if p.is_dir()]


def _spooled(folder: Path) -> set[str]:
    """Request ids of the complete records in a worker's spool folder (not yet flushed to the ledger)."""
    ids: set[str] = set()
    for segment in folder.glob("*.jsonl"):
        for line in segment.read_bytes().split(b"\n")[:-1]:  # the last one is empty or being written
            ids.add(json.loads(line)["request_id"])
    return ids


def _loaded_worker(gateway: Gateway, tmp_path: Path, records: int) -> tuple[psutil.Process, set[str]] | None:
    """A worker holding at least `records` records in its spool only, and their ids (None: none yet)."""
    for worker in _workers(gateway):
        for folder in (tmp_path / "spool").glob(f"{worker.pid}-*"):
            try:
                ids = _spooled(folder)
            except FileNotFoundError:  # a segment deleted as the worker flushed
                continue
            if len(ids) >= records:
                return worker, ids
    return None


def test_two_workers_serve_record_once_and_stop_cleanly(
    make_gateway: GatewayFactory, redis: PrivateRedis, engine: dict[str, str], tmp_path: Path
) -> None:
    gateway = make_gateway(workers=2, extra={"state": redis.url}, **engine)
    assert len(_workers(gateway)) == 2
    received = _load(gateway, threads=4, each=40)
    assert len(received) == 160

    by_worker = _requests_by_worker(gateway)
    assert set(by_worker) == {"0", "1"}, f"both workers must take requests: {by_worker}"
    assert all(v > 0 for v in by_worker.values()), by_worker
    assert sum(by_worker.values()) == 160  # one scrape answers for both workers

    assert gateway.proc is not None
    assert gateway.stop(signal.SIGTERM) == 0
    ids = [r.request_id for r in ledger.records(gateway.ledger)]
    assert sorted(ids) == sorted(received)  # every request once, flushed at the stop
    assert _spool_folders(tmp_path) == []


def test_a_killed_worker_is_restarted_and_loses_nothing(
    make_gateway: GatewayFactory, redis: PrivateRedis, engine: dict[str, str], tmp_path: Path
) -> None:
    # A long flush interval: the killed worker's latest records are only in its spool when it dies.
    storage = {"flush_interval_ms": 5000, "batch_size": 100_000, "adopt_orphans_seconds": 1}
    gateway = make_gateway(workers=2, extra={"state": redis.url}, storage=storage, **engine)
    stop = threading.Event()
    received: list[str] = []
    load = threading.Thread(target=_load, args=(gateway, 4, 100_000, stop, received))
    load.start()
    try:
        # Paced by what happens, not by the clock (the machine may be slow): the kill comes once a worker
        # holds records only in its spool, the load goes on until its successor serves.
        found: list[tuple[psutil.Process, set[str]]] = []

        def loaded() -> bool:
            victim = _loaded_worker(gateway, tmp_path, 3)
            found.extend([victim] if victim else [])
            return bool(found)

        wait_until(loaded, 120, "a worker with records in its spool")
        worker, spooled = found[0]
        worker.send_signal(signal.SIGKILL)
        at_kill = len(received)
        wait_until(lambda: len(_workers(gateway)) == 2 and worker.pid not in {p.pid for p in _workers(gateway)},
                   30, "the restarted worker")  # fmt: skip
        wait_until(lambda: _answering(gateway) == {"0", "1"}, 60, "both workers answering /metrics")
        wait_until(lambda: len(received) >= at_kill + 20, 60, "requests answered after the kill")
    finally:
        stop.set()
        load.join(60)
    assert httpx.post(gateway.url + "/v1/chat/completions", json=BODY, headers=HEADERS, timeout=10).status_code == 200

    assert gateway.stop(signal.SIGTERM) == 0
    ids = [r.request_id for r in ledger.records(gateway.ledger)]
    assert len(ids) == len(set(ids)), "a record written twice"
    assert not spooled - set(ids), "records in the killed worker's spool are not in the ledger"
    missing = set(received) - set(ids)
    assert not missing, f"{len(missing)} responses the clients received have no ledger record"
    assert _spool_folders(tmp_path) == []
